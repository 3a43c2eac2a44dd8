"""Scoring an official result file on a COCO-sized case: the `csra evaluate --scores` process against an
in-process re-implementation of the official CSRA evaluation (utils/evaluation: eval.py, cal_mAP.py, cal_PR.py).

    python bench/bench_scoring.py [--images N] [--repeat R] [--csra PATH]

Writes, in a temp folder, N images x 80 classes (default 40,137, the COCO 2014 val size) as an official scores
file ([{"file_name", "scores"}], random scores on 4 decimals, fixed seed) and an annotation file
([{"target", "img_path"}], ~4 % positives). Then times, in the same run:
  (a) the whole process `csra evaluate --scores S --annotations A --dataset coco --out-dir D --params P` (wall
      time; P is the repository's params.yaml, so it also checks that file against conf/),
  (a+) the same with --plots (plots/pr_curves.png and plots/ap_per_class.png too), and
  (b) the official algorithm in this process (tests/official_metrics.py, the tests' reference): load both JSON
      files, per class gather its column and compute AP after argsort with a Python loop over the ranks, then
      CP/CR/CF1/OP/OR/OF1 and their top-3 form.
Prints the best and the median of R runs of each and their ratios to (b). Not a test: numbers depend on the
machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # run as `python bench/bench_scoring.py`: the tests' official metrics
from official_metrics import official_ap, official_threshold_metrics, official_top3  # noqa: E402

CLASSES = 80


def write_case(root: Path, images: int, seed: int = 0) -> tuple[Path, Path]:
    """(scores file, annotation file) for a random COCO-sized case."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((images, CLASSES)) < 0.04).astype(int)
    scores = np.clip(rng.normal(0.3 + 0.4 * targets, 0.2), 0, 1).round(4)
    names = [f"COCO_val2014_{i:012d}" for i in range(images)]
    annotations = [{"target": t, "img_path": f"val2014/{n}.jpg"} for t, n in zip(targets.tolist(), names)]
    results = [{"file_name": n, "scores": s} for n, s in zip(names, scores.tolist())]
    (root / "ann.json").write_text(json.dumps(annotations))
    (root / "scores.json").write_text(json.dumps(results))
    return root / "scores.json", root / "ann.json"


def official_evaluation(scores_path: Path, annotations_path: Path) -> tuple[float, dict, dict]:
    """(mAP, threshold metrics, top-3 threshold metrics) as the official scripts compute them: load both JSON
    files, gather each class's column and rank it (tests/official_metrics.py, the tests' reference)."""
    results = json.loads(scores_path.read_text())
    annotations = json.loads(annotations_path.read_text())
    aps = [official_ap([entry["scores"][c] for entry in results], [item["target"][c] for item in annotations])
           for c in range(CLASSES)]
    scores, targets = np.zeros((len(results), CLASSES)), np.zeros((len(results), CLASSES))
    for i, (entry, item) in enumerate(zip(results, annotations)):
        scores[i], targets[i] = entry["scores"], item["target"]
    return float(np.mean(aps)), official_threshold_metrics(scores, targets), \
        official_threshold_metrics(official_top3(scores), targets)


def timed(repeat: int, run: Callable[[], object]) -> tuple[float, float, object]:
    """(best, median) seconds of repeat calls, and the last call's result."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40137)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--csra", default=str(Path(sys.executable).parent / "csra"), help="the csra command")
    parser.add_argument("--params", default=str(REPO / "params.yaml"), help="params file passed to csra evaluate")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        scores, annotations = write_case(root, args.images)
        command = [args.csra, "evaluate", "--scores", str(scores), "--annotations", str(annotations),
                   "--dataset", "coco", "--out-dir", str(root / "out"), "--params", args.params]

        def process(*extra: str) -> None:
            done = subprocess.run([*command, *extra], cwd=root, env=env, capture_output=True, text=True)
            if done.returncode:
                sys.exit(f"csra evaluate failed ({done.returncode}):\n{done.stdout}{done.stderr}")

        ours = timed(args.repeat, process)
        mean_ap = json.loads((root / "out" / "metrics.json").read_text())["mAP"]
        plotted = timed(args.repeat, lambda: process("--plots"))
        official = timed(args.repeat, lambda: official_evaluation(scores, annotations))
    print(f"{args.images} images x {CLASSES} classes, best / median of {args.repeat} (mAP {mean_ap:.4f} vs "
          f"official {100 * official[2][0]:.4f}):")
    print(f"  (a)  csra evaluate --scores, whole process:  {ours[0]:.2f} / {ours[1]:.2f} s")
    print(f"  (a+) the same with --plots:                  {plotted[0]:.2f} / {plotted[1]:.2f} s")
    print(f"  (b)  official evaluation, in process:        {official[0]:.2f} / {official[1]:.2f} s")
    for name, times in (("(a) ", ours), ("(a+)", plotted)):
        print(f"  {name} / (b): {times[0] / official[0]:.2f} (best), {times[1] / official[1]:.2f} (median)")


if __name__ == "__main__":
    main()
