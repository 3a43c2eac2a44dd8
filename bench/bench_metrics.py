"""Time every evaluation metric on a COCO-sized case (40,137 images x 80 classes), on one core.

    python bench/bench_metrics.py [--images N] [--classes K] [--repeat R]

Prints the best of R runs of evaluate_scores (mAP, the six threshold metrics and their top-3 forms) and of the
per-class table. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from csra.evaluate.metrics import evaluate_scores, per_class_table  # noqa: E402


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40137)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    targets = (rng.random((args.images, args.classes)) < 0.04).astype(np.int64)
    scores = np.clip(rng.normal(0.3 + 0.4 * targets, 0.2), 0, 1).round(4)  # rounded: ties as in real scores
    total = best_of(args.repeat, lambda: evaluate_scores(scores, targets, "coco", 0.5))
    table = best_of(args.repeat, lambda: per_class_table(scores, targets, "coco", 0.5))
    print(f"{args.images} images x {args.classes} classes, best of {args.repeat}:")
    print(f"  all metrics (mAP, CP..OF1, top-3): {total:.3f} s")
    print(f"  per-class table:                   {table:.3f} s")


if __name__ == "__main__":
    main()
