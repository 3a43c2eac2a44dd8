"""The official CSRA evaluation's metrics (utils/evaluation/cal_mAP.py: json_map; cal_PR.py: metric and
json_metric_top3), rewritten step by step without any `csra` code and with numpy only: the independent reference
of the tests (tests/evaluate, tests/stages, tests/test_api.py) and of the bench scripts (bench/bench_scoring.py).

Like the official code: each class's column in float64; ignored images dropped for AP (voc07: code 0, with -1 read
as 0; wider: code 99); the ranking by np.argsort(-score), so tied scores fall in its order; AP as the mean, over the
positives, of the precision at each positive's rank, summed in a Python loop over the ranks."""

from __future__ import annotations

import numpy as np

TOP_K = 3  # json_metric_top3: all but the three highest scores of each image set to 0


def official_ap(score, target, label_format: str = "coco") -> float:
    """AP of one class (json_map): score and target are that class's column over the images."""
    predict = np.array(score, dtype=np.float64)
    target = np.array(target, dtype=np.float64)
    if label_format == "wider":
        kept = np.where(target != 99)[0]
        predict, target = predict[kept], target[kept]
    if label_format == "voc07":
        kept = np.where(target != 0)[0]
        predict, target = predict[kept], target[kept]
        target[target == -1] = 0
    target = target[np.argsort(-predict)]
    found, total = 0.0, 0.0
    for rank, label in enumerate(target, start=1):
        if label == 1:
            found += 1.0
            total += found / rank
    return total / found


def official_threshold_metrics(scores, targets, label_format: str = "coco", threshold: float = 0.5
                               ) -> dict[str, float]:
    """CP, CR, CF1, OP, OR, OF1 (metric): counts per class (voc07 drops code 0 and reads -1 as 0; wider reads 99
    as 0), a class that predicts nothing counts one prediction. Every class needs a positive."""
    scores = np.array(scores, dtype=np.float64)
    targets = np.array(targets, dtype=np.float64)
    positives, predicted, hits = (np.zeros(scores.shape[1]) for _ in range(3))
    for c in range(scores.shape[1]):
        score, target = scores[:, c], targets[:, c].copy()
        if label_format == "wider":
            target[target == 99] = 0
        if label_format == "voc07":
            kept = np.where(target != 0)[0]
            score, target = score[kept], target[kept]
            target[target == -1] = 0
        positives[c] = np.sum(target == 1)
        predicted[c] = np.sum(score >= threshold)
        hits[c] = np.sum(target * (score >= threshold))
    predicted[predicted == 0] = 1
    op, orr = hits.sum() / predicted.sum(), hits.sum() / positives.sum()
    cp, cr = np.sum(hits / predicted) / len(hits), np.sum(hits / positives) / len(hits)
    return {"CP": cp, "CR": cr, "CF1": 2 * cp * cr / (cp + cr), "OP": op, "OR": orr, "OF1": 2 * op * orr / (op + orr)}


def official_top3(scores) -> np.ndarray:
    """json_metric_top3's scores: in each image (row), all but the TOP_K highest (np.argsort(-row) order) set to 0."""
    kept = np.array(scores, dtype=np.float64)
    for row in kept:
        row[np.argsort(-row)[TOP_K:]] = 0.0
    return kept
