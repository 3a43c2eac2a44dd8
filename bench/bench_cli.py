"""Start time of the `csra` command: the whole process for `csra --help` and each `csra COMMAND --help`, and the
heavy libraries each one loads (none of torch, torchvision, MLflow or matplotlib is needed to print help).

    python bench/bench_cli.py [--repeat R] [--csra PATH]

Prints the best and the median wall time of R runs per command. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

HEAVY = ("torch", "torchvision", "mlflow", "matplotlib")
COMMANDS = ([], ["prepare"], ["train"], ["evaluate"], ["demo"], ["export"])
PROBE = ("import sys; from stages.cli import main; sys.argv = ['csra', *sys.argv[1:]]\n"
         "try:\n    main()\nexcept SystemExit:\n    pass\n"
         f"print('loaded:', sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)")


def wall_times(command: list[str], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--csra", default=str(Path(sys.executable).parent / "csra"), help="the csra command")
    args = parser.parse_args()
    print(f"best / median of {args.repeat} runs, whole process:")
    for sub in COMMANDS:
        times = wall_times([args.csra, *sub, "--help"], args.repeat)
        probe = subprocess.run([sys.executable, "-c", PROBE, *sub, "--help"], capture_output=True, text=True)
        loaded = probe.stderr.strip().splitlines()[-1]
        name = " ".join(["csra", *sub, "--help"])
        print(f"  {name:<24} {min(times):.3f} / {statistics.median(times):.3f} s   {loaded}")


if __name__ == "__main__":
    main()
