"""What DVC costs to watch a COCO-sized raw folder: a scratch git + DVC project whose stage depends on data/raw (as
the prepare stage does), a folder of 82,783 + 40,504 small files under data/raw/coco2014 tracked with `dvc add`, and
the wall time of each command a user runs. The files are small, so the figures are DVC's per-file work (walking,
stat, its state database), not the reading of 19 GB of JPEGs.

    python bench/bench_dvc_status.py                     # COCO 2014's train and val image counts
    python bench/bench_dvc_status.py --train 5000 --val 2500 --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STAGE = """stages:
  prepare:
    cmd: echo prepared > prepared.txt
    deps:
      - data/raw
    outs:
      - prepared.txt
"""


def dvc(*args: str, cwd: Path) -> float:
    """Seconds `dvc ARGS` took (its exit status is not judged: `dvc status -q` exits 1 when something changed)."""
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, check=False)
    return time.monotonic() - start


def row(label: str, seconds: float) -> None:
    print(f"{label:<50}{seconds:7.1f}")


def median_of(runs: int, *args: str, cwd: Path) -> float:
    return statistics.median(dvc(*args, cwd=cwd) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=82_783, help="files under train2014/")
    parser.add_argument("--val", type=int, default=40_504, help="files under val2014/")
    parser.add_argument("--runs", type=int, default=3, help="runs of each repeated command (the median is printed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        dvc("init", "-q", cwd=root)
        (root / "dvc.yaml").write_text(STAGE)
        raw = root / "data/raw/coco2014"
        for split, count in (("train2014", args.train), ("val2014", args.val)):
            (raw / split).mkdir(parents=True)
            for i in range(count):
                (raw / split / f"COCO_{split}_{i:012d}.jpg").write_bytes(os.urandom(64))
        print(f"{args.train + args.val} files under data/raw/coco2014; seconds (median of {args.runs} where repeated)")
        row("dvc add data/raw/coco2014 (hashes every file)", dvc("add", "-q", "data/raw/coco2014", cwd=root))
        row("dvc repro (the stage's first run)", dvc("repro", "-q", cwd=root))
        row("dvc status, nothing changed", median_of(args.runs, "status", "-q", cwd=root))
        with (raw / "val2014" / "COCO_val2014_000000000007.jpg").open("ab") as f:
            f.write(b"changed")
        row("dvc status, one image changed", median_of(args.runs, "status", "-q", cwd=root))
        row("dvc add data/raw/coco2014 again", dvc("add", "-q", "data/raw/coco2014", cwd=root))
        row("dvc repro (the stage re-runs)", dvc("repro", "-q", cwd=root))

if __name__ == "__main__":
    main()
