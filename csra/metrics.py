"""Multi-label metrics exactly as the official CSRA evaluation: AP/mAP and CP/CR/CF1/OP/OR/OF1.

Label formats: voc07 ignores 0 (difficult) per class and reads -1 as negative; wider ignores 99 for AP and counts it
as negative in the threshold metrics (as the official code does); coco and training files are plain 0/1.
A class without any positive gets NaN and is left out of the means; `evaluate` names it.
"""

from __future__ import annotations

import numpy as np

THRESHOLD_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _class_column(scores: np.ndarray, targets: np.ndarray, label_format: str, for_ap: bool):
    """Scores and 0/1 targets of one class after the label format's ignore rules."""
    if label_format == "voc07":
        keep = targets != 0
        return scores[keep], (targets[keep] == 1).astype(np.float64)
    if label_format == "wider" and for_ap:
        keep = targets != 99
        return scores[keep], (targets[keep] == 1).astype(np.float64)
    return scores, (targets == 1).astype(np.float64)


def average_precision(scores: np.ndarray, targets: np.ndarray, label_format: str = "coco") -> np.ndarray:
    """AP per class: images sorted by descending score, mean of the precision at the rank of each positive."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets, np.float64)
    aps = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        score, target = _class_column(scores[:, c], targets[:, c], label_format, for_ap=True)
        hits = target[np.argsort(-score)] == 1
        if hits.any():
            ranks = np.flatnonzero(hits) + 1.0
            aps[c] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
    return aps


def threshold_metrics(
    scores: np.ndarray, targets: np.ndarray, label_format: str = "coco", threshold: float = 0.5
) -> dict[str, float]:
    """CP, CR, CF1 (per-class means) and OP, OR, OF1 (over all labels) for predictions score >= threshold."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets, np.float64)
    num_classes = scores.shape[1]
    gt, tp, predicted = np.zeros(num_classes), np.zeros(num_classes), np.zeros(num_classes)
    for c in range(num_classes):
        score, target = _class_column(scores[:, c], targets[:, c], label_format, for_ap=False)
        positive = score >= threshold
        gt[c], predicted[c], tp[c] = target.sum(), positive.sum(), (target * positive).sum()
    predicted[predicted == 0] = 1
    has_positive = gt > 0
    op, orr = tp.sum() / predicted.sum(), tp.sum() / max(gt.sum(), 1)
    cp = np.mean((tp / predicted)[has_positive]) if has_positive.any() else np.nan
    cr = np.mean(tp[has_positive] / gt[has_positive]) if has_positive.any() else np.nan
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else 0.0


def mean_average_precision(aps: np.ndarray) -> float:
    """Mean of the per-class APs over the classes that have a positive (NaN if none has)."""
    return float(np.nanmean(aps)) if not np.isnan(aps).all() else float("nan")


def evaluate_scores(
    scores: np.ndarray, targets: np.ndarray, label_format: str, threshold: float
) -> tuple[dict[str, float], np.ndarray]:
    """(metrics in percent: mAP + the six threshold metrics, AP per class as fractions with NaN for no positive)."""
    aps = average_precision(scores, targets, label_format)
    metrics = {"mAP": mean_average_precision(aps)}
    metrics.update(threshold_metrics(scores, targets, label_format, threshold))
    return {k: 100.0 * float(v) for k, v in metrics.items()}, aps
