"""The docs name only what the repository has: every repository path that README.md and docs/*.md name (in inline
code or a link) exists, and every relative link resolves, to a file and, with `#anchor`, to one of its headings.

A path exists when it is in the repository's tree, or it is an output that dvc.yaml declares (`${...}` resolved
from params.yaml) or that `dvc add` tracks, or a generated name that a .gitignore lists (mlflow.db, mlartifacts/,
.venv/, …): the verdict is the same on a fresh clone and after `make repro`. A word counts as a repository path
when it starts with one of the repository's top-level names (`csra/…`, `tests/…`, `dvc.yaml`, `mlartifacts/`),
leaves the repository (`../…`), names a machine's own folder (`/work/…`, `/tmp/…`) or is a Python file; paths
relative to something else (a raw dataset's `Annotations/*.xml`, a model's `model/data/model.pt2`), URLs, model
URIs and placeholders (`<name>`, `conf/train/NAME.yaml`) are not checked."""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
import yaml
from helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

EXTENSIONS = (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".json", ".csv", ".cfg", ".ini", ".lock", ".db",
              ".pt", ".pt2", ".pth", ".onnx", ".png", ".jpg", ".html", ".sh")
MACHINE = re.compile(r"(?<![\w.:/$~-])/(?:work|tmp|home|root|Users|mnt)/[^\s`)\]>\"']*(?<![.,;:])")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # NAME, RAW, IMAGE, CLASS, HOST0 …
USER_DATA = "data/raw/"  # where users put their datasets: the docs name examples (data/raw/voc2007) there
NOT_PLACEHOLDERS = {"README", "LICENSE", "CHANGELOG", "CONTRIBUTING", "ARCHITECTURE", "AUTHORS", "NOTICE",
                    "COPYING", "SECURITY", "CODEOWNERS", "MANIFEST"}
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
LINK = re.compile(r"!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


# The repository: what exists, whatever has been run in it ------------------------------------------------------

@dataclass
class Repo:
    root: Path
    ignores: list[tuple[str, str]] = field(default_factory=list)  # (folder of the .gitignore, pattern)
    outputs: set[str] = field(default_factory=set)  # dvc.yaml's outs, metrics and plots, resolved
    roots: set[str] = field(default_factory=set)  # the top-level names a repository path starts with

    @classmethod
    def load(cls, root: Path) -> Repo:
        repo = cls(root)
        repo.ignores = gitignore_patterns(root)
        repo.outputs = declared_outputs(root)
        listed = {name for name in os.listdir(root) if name != ".git" and not repo.ignored(name)}
        generated = {pattern.strip("/") for folder, pattern in repo.ignores
                     if folder == "" and not any(c in pattern for c in "*?[") and "/" not in pattern.strip("/")}
        repo.roots = listed | generated | {out.split("/")[0] for out in repo.outputs}
        return repo

    def ignored(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        for folder, pattern in self.ignores:
            base = folder.split("/") if folder else []
            if parts[:len(base)] != base or len(parts) == len(base):
                continue
            rel = parts[len(base):]
            body = pattern.rstrip("/")
            if "/" in body:  # anchored to the .gitignore's folder: the path or a folder above it matches
                pat = body.lstrip("/").split("/")
                if len(rel) >= len(pat) and all(fnmatch.fnmatchcase(r, p) for r, p in zip(rel, pat)):
                    return True
            elif any(fnmatch.fnmatchcase(part, body) for part in rel):  # a name anywhere below
                return True
        return False

    def declared(self, path: str) -> bool:
        return any(path == out or path.startswith(out + "/") or out.startswith(path + "/") for out in self.outputs)

    def dvc_added(self, path: str) -> bool:
        parts = path.split("/")
        return any((self.root / ("/".join(parts[:n]) + ".dvc")).is_file() for n in range(1, len(parts) + 1))

    def exists(self, path: str) -> bool:
        """`path`: relative to the root, normalised, inside the repository."""
        path = path.rstrip("/")
        if not path or path == ".":
            return True
        return ((self.root / path).exists() or self.declared(path) or self.ignored(path)
                or self.dvc_added(path))

    def matches(self, pattern: str) -> bool:
        """A glob (`conf/train/*.yaml`): something in the tree matches, or it lies in an output or ignored folder."""
        if any(self.root.glob(pattern)):
            return True
        fixed = []
        for part in pattern.split("/"):
            if any(c in part for c in "*?["):
                break
            fixed.append(part)
        prefix = "/".join(fixed)
        return bool(prefix) and prefix != pattern and (self.declared(prefix) or self.ignored(prefix + "/x"))


def gitignore_patterns(root: Path) -> list[tuple[str, str]]:
    """Every .gitignore's patterns, with its folder (relative to root); ignored folders are not entered."""
    patterns: list[tuple[str, str]] = []
    probe = Repo(root, patterns)
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        if ".gitignore" in files:
            for line in (Path(folder) / ".gitignore").read_text().splitlines():
                line = line.strip()
                if line and not line.startswith(("#", "!")):
                    patterns.append((rel, line))
        dirs[:] = [d for d in dirs if d != ".git" and not probe.ignored(f"{rel}/{d}".lstrip("/"))]
    return patterns


def declared_outputs(root: Path) -> set[str]:
    """The paths dvc.yaml's stages write (outs, metrics, plots) and its top-level plots read, `${...}` resolved."""
    params = yaml.safe_load((root / "params.yaml").read_text())
    dvc = yaml.safe_load((root / "dvc.yaml").read_text())

    def resolve(text: str) -> str:
        def value(match: re.Match) -> str:
            node = params
            for key in match.group(1).strip().split("."):
                node = node[key]
            return str(node)
        return posixpath.normpath(re.sub(r"\$\{([^}]+)\}", value, text))

    def names(entries) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]

    outputs = set()
    for stage in (dvc.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            outputs |= {resolve(name) for name in names(stage.get(kind))}
    for plot in dvc.get("plots") or []:
        for name, spec in (plot.items() if isinstance(plot, dict) else [(plot, None)]):
            if "/" in name:
                outputs.add(resolve(name))
            if isinstance(spec, dict) and isinstance(spec.get("y"), dict):
                outputs |= {resolve(y) for y in spec["y"]}
    return outputs


@cache
def repository() -> Repo:
    return Repo.load(REPO)


# The docs: what they name ------------------------------------------------------------------------------------

def split_fences(text: str) -> tuple[str, str]:
    """(the text outside fenced code blocks, the text inside them); lines keep their places."""
    prose, code, inside = [], [], False
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
            prose.append("")
            code.append("")
            continue
        (code if inside else prose).append(line)
        (prose if inside else code).append("")
    return "\n".join(prose), "\n".join(code)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|__", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose, _ = split_fences(text)
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        if match := HEADING.match(line):
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def expand_braces(token: str) -> list[str]:
    match = re.search(r"\{([^{}]*)\}", token)
    if not match:
        return [token]
    head, tail = token[:match.start()], token[match.end():]
    return [x for alt in match.group(1).split(",") for x in expand_braces(head + alt + tail)]


def placeholder_glob(path: str) -> str:
    """`conf/train/NAME.yaml` → `conf/train/*.yaml`: a capitalised word stands for any name."""
    parts = []
    for part in path.split("/"):
        stem, dot, ext = part.partition(".")
        parts.append("*" + dot + ext if PLACEHOLDER.match(stem) and stem not in NOT_PLACEHOLDERS else part)
    return "/".join(parts)


def path_problem(token: str, repo: Repo) -> str | None:
    """Why `token` (a word of inline code) is a repository path that does not exist; None when it exists or is not
    a repository path. Absolute paths are left to the scan for machine paths."""
    token = token.strip("'\"()[],;").rstrip(".:")
    if not token or token.startswith(("-", "/")) or any(c in token for c in ":$~=<>@…\\"):
        return None
    first = token.split("/")[0]
    if token.startswith(USER_DATA) and not (REPO / token).is_file():
        return None
    if "/" not in token:
        if not token.endswith(EXTENSIONS) or token not in repo.roots:
            return None  # a bare file name (best.pt, classes.txt) is relative to a folder the text names
    elif not (first in repo.roots or first in (".", "..") or token.endswith(".py")):
        return None  # relative to something else: a raw dataset folder, a model's artifacts, the user's folder
    for alternative in expand_braces(token):
        path = posixpath.normpath(alternative)
        if path == ".." or path.startswith("../"):
            return "outside the repository"
        pattern = placeholder_glob(path)
        if not (repo.exists(path) or any(c in pattern for c in "*?[") and repo.matches(pattern)):
            return "no such file or folder in the repository"
    return None


def link_problem(target: str, doc: Path, text: str, repo: Repo) -> str | None:
    """Why the link `target` in `doc` (whose contents are `text`) does not resolve; None when it does."""
    if SCHEME.match(target):
        return None  # https:, mailto:, …
    path, _, anchor = target.partition("#")
    if not path:
        file, contents = doc, text
    else:
        rel = posixpath.normpath(posixpath.join(doc.parent.relative_to(repo.root).as_posix(), path))
        if rel == ".." or rel.startswith("../"):
            return "outside the repository"
        if not repo.exists(rel):
            return "no such file or folder in the repository"
        file = repo.root / rel
        contents = file.read_text() if file.is_file() and file.suffix == ".md" else None
    if anchor and file.suffix == ".md":
        if contents is None:
            return f"{file.name} is not there to hold #{anchor}"
        if anchor not in anchors(contents):
            return f"no heading #{anchor} in {file.name}"
    return None


def problems(doc: Path, text: str, repo: Repo | None = None) -> list[str]:
    """One line per stale reference in `text`, the contents of `doc` (a path under the repository)."""
    repo = repo or repository()
    name = doc.relative_to(repo.root).as_posix()
    prose, code = split_fences(text)
    found = []
    for match in LINK.finditer(prose):
        if why := link_problem(match.group(2), doc, text, repo):
            found.append(f"{name}: link ({match.group(2)}): {why}")
    for match in CODE_SPAN.finditer(prose):
        for token in match.group(2).split():
            if why := path_problem(token, repo):
                found.append(f"{name}: `{token}`: {why}")
    for token in code.split():  # in code blocks: the scripts run by path
        if token.endswith(".py") and "/" in token and (why := path_problem(token, repo)):
            found.append(f"{name}: `{token}` (code block): {why}")
    for match in MACHINE.finditer(text):
        found.append(f"{name}: {match.group(0)}: a path of one machine, not of the repository")
    return sorted(set(found))


# The checks --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_and_link_in_the_docs_exists(doc):
    assert problems(doc, doc.read_text()) == []


def test_every_docs_page_is_linked_from_the_readme():
    readme = (REPO / "README.md").read_text()
    linked = {posixpath.normpath(target.partition("#")[0]) for _, target in LINK.findall(readme)}
    assert [p.name for p in DOCS[1:] if f"docs/{p.name}" not in linked] == []
    assert len(DOCS) > 1


def test_the_outputs_dvc_yaml_declares_are_resolved_from_params():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    outputs = repository().outputs
    assert f"{params['train']['out_dir']}/best.pt" in outputs
    assert params["data"]["prepared_dir"] in outputs
    assert not [out for out in outputs if "${" in out]


STALE = """# A page

The walk is `tests/test_gone.py`; the design is in `../shared/ARCHITECTURE.md`, also [here](../../shared/x.md),
on one machine `/work/main/README.md` and in /tmp/csra/notes. Scripts: `python scripts/run.py`,
`bench/bench_nothing.py`, `csra/train/loops.py`, `conf/train/paper.yml`; the pages [settings](settings.md#no-such-key),
[nothing](nothing.md), [no file](../results/train/nothing/x.md#a).

```bash
python bench/bench_gone.py --repeat 3
```
"""


def test_a_doc_naming_what_is_not_there_is_reported():
    found = problems(REPO / "docs" / "stale.md", STALE)
    for word in ("tests/test_gone.py", "../shared/ARCHITECTURE.md", "../../shared/x.md", "/work/main/README.md",
                 "/tmp/csra/notes", "scripts/run.py", "bench/bench_nothing.py", "csra/train/loops.py",
                 "conf/train/paper.yml", "settings.md#no-such-key", "nothing.md", "bench/bench_gone.py"):
        assert [line for line in found if word in line], (word, found)
    assert [line for line in found if "no heading #no-such-key in settings.md" in line]


SOUND = """# A page

## What `make repro` gives

URLs and URIs: `http://127.0.0.1:5000/#/experiments/<id>/runs?workflowType=machine_learning`,
`models:/csra@champion`, `models:/csra/3`, `sqlite:///$PWD/mlflow.db`, `postgresql://user:password@db/mlflow`,
[MLflow](https://mlflow.org/docs/latest/index.html), `refs/exps/<2>/<38>/<name>`, `$TORCH_HOME/hub/checkpoints/`,
`~/.cache/torch`, `/usr/bin/time -v make repro`, `pip install -c constraints.txt -e '.[gpu]'`.
Placeholders and other folders: `<name>`, `conf/train/NAME.yaml`, `IMAGE/CLASS.png`, `RAW/classes.txt`,
`VOC2007/ImageSets/Main/{train,val,trainval,test}.txt`, `annotations/instances_{train,val}2014.json`,
`system/…`, `model/data/model.pt2`, `demo/heatmaps/`, `{"target": [...], "img_path": "..."}`, `best.pt`,
`csra evaluate --checkpoint X --annotations Y --out-dir Z`, `dvc exp run -S data.dataset=custom_csv …`.
Generated and declared: `results/train.partial/`, `mlartifacts/`, `.venv/bin/mlflow`, `mlflow.db`,
`dvc_plots/index.html`, `data/prepared/synthetic/demo/demo_00.jpg`, `results/train/best.pt`,
`results/evaluate/plots/pr_curves.png`, `train_state.pt`.
In the tree: `csra/train/loop.py`, `bench/bench_train.py`, `conf/train/paper.yaml`, `conf/train/*.yaml`,
`tests/stages/test_dvc_graph.py`, `docs/mlflow.md`, `csra/deploy/`, `dvc.yaml`,
[settings](settings.md), [the README](../README.md#layout), [above](#what-make-repro-gives), [code](../csra/).

```bash
mlflow server --backend-store-uri sqlite:///srv/mlflow/mlflow.db --artifacts-destination /srv/mlflow/artifacts
csra demo --model-uri models:/csra@champion --images my_photos/ --out-dir results/demo_champion
python bench/bench_e2e.py --model resnet18
```
"""


def test_what_is_not_a_repository_path_is_not_reported():
    assert problems(REPO / "docs" / "sound.md", SOUND) == []
