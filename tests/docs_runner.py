"""Runs the code blocks of a Markdown page as written, in order, the way a reader would in one terminal: each
bash block in a fresh `bash -e` that first runs the page's activation block (if it has one), in a shell where the
project's environment is not active; yaml blocks are merged into the file their marker names.

A comment right above a block says how the page means it (`<!-- test: … -->`, invisible on the rendered page):
`server PORT` a command that keeps serving on PORT (it runs in the background on a free port, which replaces PORT
in every later block, until the page is done), `fails "TEXT"` a command that must stop with TEXT in its output on
a machine like the tests' (no GPU, no downloads), `into FILE` a yaml block of values to set in FILE, `skip: WHY` a
block the tests cannot run (a cluster, another machine), and why."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from helpers import GIT_ENV, free_port, merge, stop, wait_until_answers

FENCE = re.compile(r"^```(\w*)\s*$")
MARK = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->$")
ACTIVATE = ". .venv/bin/activate"
COMMANDS = ("bash", "python")  # the languages of blocks a reader runs


@dataclass
class Block:
    lang: str
    text: str
    line: int
    mark: str = ""

    @property
    def kind(self) -> str:
        return self.mark.split()[0].rstrip(":") if self.mark else "run"


def blocks(page: Path) -> list[Block]:
    """The page's fenced code blocks, in order, each with the marker comment on the line above it."""
    found, lines, current, mark = [], page.read_text().splitlines(), None, ""
    for number, line in enumerate(lines, start=1):
        if current is not None:
            if line.startswith("```"):
                found.append(current)
                current = None
            else:
                current.text += line + "\n"
        elif (fence := FENCE.match(line)) is not None:
            current, mark = Block(fence.group(1), "", number, mark), ""
        elif (marker := MARK.match(line.strip())) is not None:
            mark = marker.group(1)
        elif line.strip():
            mark = ""
    return found


def unactivated_env(**extra: str) -> dict[str, str]:
    """The tests' environment as a fresh shell has it: no virtual environment on PATH or in VIRTUAL_ENV."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "MLFLOW_TRACKING_URI")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep)
                                  if not Path(p).parent.joinpath("pyvenv.cfg").is_file())
    return {**env, **GIT_ENV, **extra}


def merge_into(path: Path, values: dict) -> None:
    """Set the values of a yaml block in the yaml file at path (mappings merged key by key, lists replaced)."""
    data = merge(yaml.safe_load(path.read_text()) or {}, values)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


@dataclass
class Reader:
    """One reader of a page at root: what each block printed, how long it took, and the servers still serving."""

    root: Path
    logs: Path
    env: dict[str, str]
    prelude: str = ""
    ports: dict[str, str] = field(default_factory=dict)
    hosts: dict[str, str] = field(default_factory=dict)  # a page's example addresses → the test's servers
    servers: list = field(default_factory=list)
    times: list[tuple[str, float]] = field(default_factory=list)

    def text(self, block: Block) -> str:
        text = block.text
        for old, new in self.hosts.items():
            text = text.replace(old, new)
        for old, new in self.ports.items():
            text = re.sub(rf"(?<=[:\s]){old}\b", new, text)
        return text

    def read(self, page_blocks: list[Block]) -> dict[int, str]:
        """Run the blocks in order; the output of each, by index."""
        return {index: self.run(block) for index, block in enumerate(page_blocks)}

    def run(self, block: Block) -> str:
        text, began = self.text(block), time.monotonic()
        if block.kind == "skip" or (block.lang not in COMMANDS and block.kind != "into"):
            return ""
        if block.kind == "into":
            merge_into(self.root / block.mark.split(maxsplit=1)[1], yaml.safe_load(text))
            return ""
        if block.lang == "bash" and text.strip() == ACTIVATE:
            self.prelude = ACTIVATE + "\n"
            return ""
        if block.kind == "server":
            return self.serve(block, text)
        script, given = (self.prelude + text, None) if block.lang == "bash" else (self.prelude + "exec python -", text)
        done = subprocess.run(["bash", "-e", "-c", script], input=given, cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=900)
        output = done.stdout + done.stderr
        self.times.append((text.strip().splitlines()[-1][:70], time.monotonic() - began))
        if block.kind == "fails":
            expected = block.mark.split(maxsplit=1)[1].strip('"')
            assert done.returncode != 0 and expected in output, f"line {block.line}: {text}\n{output}"
        else:
            assert done.returncode == 0, f"line {block.line}: {text}\nexit {done.returncode}\n{output}"
        return output

    def serve(self, block: Block, text: str) -> str:
        old = block.mark.split()[1]
        new = str(free_port())
        self.ports[old] = new
        text = self.text(block)
        log = self.logs / f"server-{new}.log"
        joined = re.sub(r"\\\n\s*", " ", text.strip())  # a command continued over several lines is one line
        *before, last = [line for line in joined.splitlines() if not line.lstrip().startswith("#")]
        script = self.prelude + "".join(f"{line}\n" for line in before) + "exec " + last
        with log.open("w") as sink:  # in a session of its own, so that its workers end with it
            server = subprocess.Popen(["bash", "-e", "-c", script], stdout=sink, stderr=subprocess.STDOUT,
                                      start_new_session=True, cwd=self.root, env=self.env)
        self.servers.append(server)
        url = f"http://127.0.0.1:{new}/" + ("ping" if "models serve" in text else "health" if "mlflow server" in text
                                            else "")
        began = time.monotonic()
        wait_until_answers(url, server, log)
        self.times.append((text.strip()[:70], time.monotonic() - began))
        return ""

    def close(self) -> None:
        for server in self.servers:
            stop(server)
