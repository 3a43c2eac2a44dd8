"""Where the test suite's CPU time goes: runs pytest under the kernel's process accounting and prints the CPU seconds
of every process that ended meanwhile, grouped by what it was (a pytest worker, `csra train`, `dvc exp`, an MLflow
server, a Ray worker, PostgreSQL...), with the run's wall time and the machine's cores.

    sudo .venv/bin/python bench/bench_suite_cpu.py [-- PYTEST ARGS]      (default: -n 2 --dist loadfile -q)

Linux only, as root (process accounting, acct(2)): the records count every process of the machine that ended during
the run, killed ones included. A `sitecustomize` put first on PYTHONPATH notes each Python process's command line as
it starts, so that Python processes are told apart by command rather than by the name "python". Not a test: the
figures depend on the machine and its load.
"""

from __future__ import annotations

import collections
import ctypes
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_ARGS = ["-p", "no:cacheprovider", "-n", "2", "--dist", "loadfile", "-q"]
RECORD = struct.Struct("<BBHIIIIIIfHHHHHHHH16s")  # struct acct_v3 (linux/acct.h), 64 bytes
NOTE_START = """\
import json, os
try:
    with open("/proc/self/cmdline", "rb") as f:
        argv = [a.decode(errors="replace") for a in f.read().split(b"\\0") if a]
    with open({log!r}, "a") as f:
        f.write(json.dumps([os.getpid(), argv]) + "\\n")
except OSError:
    pass
"""


def comp_t(value: int) -> int:
    """acct(5)'s comp_t: a 13-bit mantissa and a 3-bit base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def records(path: Path) -> list[tuple[int, str, float, float]]:
    """(pid, command name, user s, system s) of each record; the times are in clock ticks of AHZ = 100."""
    data, found = path.read_bytes(), []
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        found.append((fields[6], fields[18].split(b"\0")[0].decode(errors="replace"), comp_t(fields[10]) / 100,
                      comp_t(fields[11]) / 100))
    return found


def kind(argv: list[str] | None, comm: str) -> str:
    """What a process was, in a few words: a Python program by its script and first argument, another by its name."""
    if not argv:
        return comm
    words = [Path(argv[0]).name, *argv[1:]]
    if words[0].startswith("python"):
        words = words[1:]
        while words and words[0].startswith("-") and words[0] not in ("-m", "-c"):  # -u, -X opt, -W arg...
            words = words[2:] if words[0] in ("-X", "-W") else words[1:]
        if words[:1] == ["-m"]:
            words = words[1:]
        elif words[:1] == ["-c"]:
            code = " ".join(words[1:])
            return "pytest worker" if "execnet" in code or "exec(eval" in code else "python -c"
    if not words:
        return "python"
    script = Path(words[0]).name.removesuffix(".py")
    if script in ("cli", "stages.cli", "csra"):
        return "csra " + (words[1] if len(words) > 1 else "")
    if script in ("dvc", "__main__") and len(words) > 1:
        return "dvc " + words[1]
    if script in ("mlflow", "ray") and len(words) > 1:
        return f"{script} {words[1]}"
    return script


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    libc = ctypes.CDLL(None, use_errno=True)
    with tempfile.TemporaryDirectory(prefix="suite-cpu-") as folder:
        folder = Path(folder)
        accounting, started = folder / "acct", folder / "started.jsonl"
        accounting.touch()
        (folder / "sitecustomize.py").write_text(NOTE_START.format(log=str(started)))
        if libc.acct(str(accounting).encode()) != 0:
            sys.exit(f"error: process accounting (acct) refused: {os.strerror(ctypes.get_errno())}; run as root on "
                     "Linux")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
        began = time.monotonic()
        try:
            code = subprocess.run([sys.executable, "-m", "pytest", *(args or DEFAULT_ARGS)], env=env).returncode
        finally:
            libc.acct(None)
        wall = time.monotonic() - began
        commands = {}
        if started.exists():
            for line in started.read_text().splitlines():
                pid, argv = json.loads(line)
                commands[pid] = argv  # a reused pid: the later process, which ended later
        groups = collections.defaultdict(lambda: [0, 0.0])
        user = system = 0.0
        for pid, comm, u, s in records(accounting):
            group = groups[kind(commands.get(pid), comm)]
            group[0] += 1
            group[1] += u + s
            user, system = user + u, system + s
    total = user + system
    cores = os.cpu_count() or 1
    print(f"\npytest exit {code}, wall {wall:.0f} s on {cores} cores ({cores * wall:.0f} CPU s at most)")
    print(f"CPU of the processes that ended: {total:.0f} s (user {user:.0f}, system {system:.0f}), "
          f"{100 * total / (cores * wall):.0f}% of the cores")
    print(f"\n{'CPU s':>8} {'share':>6} {'processes':>9}  what")
    for name, (count, cpu) in sorted(groups.items(), key=lambda item: -item[1][1]):
        if cpu >= 0.5:
            print(f"{cpu:8.1f} {100 * cpu / total:5.1f}% {count:9d}  {name}")
    sys.exit(code)


if __name__ == "__main__":
    main()
