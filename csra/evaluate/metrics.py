"""Multi-label metrics exactly as the official CSRA evaluation: AP/mAP, CP/CR/CF1/OP/OR/OF1 and their top-3 form.

Label formats: voc07 ignores 0 (difficult) per class and reads -1 as negative; wider ignores 99 for AP but, as the
official code does, counts it as negative in the threshold metrics; coco and training files are plain 0/1.
A prediction is score >= threshold. A class without any positive gets NaN and is left out of the class means
(the official code fails on it); `evaluate_scores` reports which.
"""

from __future__ import annotations

import numpy as np

THRESHOLD_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")


def _labels(targets: np.ndarray, label_format: str, for_ap: bool) -> tuple[np.ndarray, np.ndarray]:
    """(counted, positive) boolean masks of the targets under the label format's ignore rules."""
    if label_format == "voc07":
        counted = targets != 0
    elif label_format == "wider" and for_ap:
        counted = targets != 99
    else:
        counted = np.ones(targets.shape, dtype=bool)
    return counted, counted & (targets == 1)


def average_precision(scores: np.ndarray, targets: np.ndarray, label_format: str = "coco") -> np.ndarray:
    """AP per class: counted images sorted by descending score, mean of the precision at each positive's rank.

    Sorted with np.argsort(-score) after dropping ignored images, as the official code does, so ties fall in the
    same order and the result is the same number.
    """
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    counted, positive = _labels(targets, label_format, for_ap=True)
    aps = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        keep = counted[:, c]
        hits = positive[keep, c][np.argsort(-scores[keep, c])]
        ranks = np.flatnonzero(hits) + 1.0
        if len(ranks):
            aps[c] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
    return aps


def precision_recall_curve(score: np.ndarray, target: np.ndarray, label_format: str) -> tuple[np.ndarray, ...]:
    """(recall, precision) after each image of one class in descending score order, the AP's ignore rules applied."""
    counted, positive = _labels(np.asarray(target), label_format, for_ap=True)
    hits = positive[counted][np.argsort(-np.asarray(score, np.float64)[counted])]
    found = np.cumsum(hits)
    total = max(int(found[-1]) if len(found) else 0, 1)
    return found / total, found / np.arange(1, len(hits) + 1)


def mean_average_precision(aps: np.ndarray) -> float:
    """Mean of the per-class APs over the classes that have a positive (NaN if none has)."""
    return float(np.nanmean(aps)) if not np.isnan(aps).all() else float("nan")


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """Scores with all but the k highest of each image set to 0 (ties ordered as np.argsort(-row))."""
    scores = np.array(scores, dtype=np.float64)
    dropped = np.argsort(-scores, axis=1)[:, k:]
    np.put_along_axis(scores, dropped, 0.0, axis=1)
    return scores


def class_counts(
    scores: np.ndarray, targets: np.ndarray, label_format: str, threshold: float | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positives, predicted, true positives) per class; threshold is one number or one per class."""
    counted, positive = _labels(np.asarray(targets), label_format, for_ap=False)
    predicted = (np.asarray(scores) >= threshold) & counted
    return positive.sum(0), predicted.sum(0), (predicted & positive).sum(0)


def per_class_table(
    scores: np.ndarray, targets: np.ndarray, label_format: str, threshold: float | np.ndarray
) -> dict[str, np.ndarray]:
    """Per class: precision, recall, F1 at the threshold and support (positives); NaN where undefined."""
    gt, predicted, tp = (a.astype(np.float64) for a in class_counts(scores, targets, label_format, threshold))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = tp / np.maximum(predicted, 1)
        recall = np.where(gt > 0, tp / gt, np.nan)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {"precision": precision, "recall": recall, "F1": np.where(gt > 0, f1, np.nan), "support": gt}


def threshold_metrics(
    scores: np.ndarray, targets: np.ndarray, label_format: str = "coco", threshold: float | np.ndarray = 0.5
) -> dict[str, float]:
    """CP, CR, CF1 (means over classes) and OP, OR, OF1 (over all labels); a class predicting nothing has
    precision 0 (its predicted count is taken as 1)."""
    gt, predicted, tp = class_counts(scores, targets, label_format, threshold)
    predicted = np.maximum(predicted, 1)
    has = gt > 0
    op, orr = tp.sum() / predicted.sum(), (tp.sum() / gt.sum() if gt.sum() else np.nan)
    cp = np.mean(tp[has] / predicted[has]) if has.any() else np.nan
    cr = np.mean(tp[has] / gt[has]) if has.any() else np.nan
    return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": orr, "OF1": _f1(op, orr)}


def _f1(precision: float, recall: float) -> float:
    total = precision + recall
    return 2 * precision * recall / total if total > 0 else (np.nan if np.isnan(total) else 0.0)


def tune_thresholds(scores: np.ndarray, targets: np.ndarray, label_format: str) -> np.ndarray:
    """Per class, the threshold (one of its scores) whose predictions score >= t give the best F1.

    Ties of F1 go to the higher threshold; a class without positive gets NaN (use the global threshold).
    """
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    counted, positive = _labels(targets, label_format, for_ap=False)
    thresholds = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        score, hit = scores[counted[:, c], c], positive[counted[:, c], c]
        if not hit.any():
            continue
        order = np.argsort(-score, kind="stable")
        score, found = score[order], np.cumsum(hit[order])
        last_of_tie = np.append(score[1:] != score[:-1], True)  # cut only after a whole group of equal scores
        f1 = np.where(last_of_tie, 2 * found / (np.arange(1, len(score) + 1) + hit.sum()), -1.0)
        thresholds[c] = score[int(np.argmax(f1))]
    return thresholds


def evaluate_scores(
    scores: np.ndarray, targets: np.ndarray, label_format: str, threshold: float
) -> tuple[dict[str, float], np.ndarray]:
    """(metrics in percent: mAP, the six threshold metrics and their top-3 forms `<name>_top3`,
    AP per class as fractions with NaN for a class without positive)."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    aps = average_precision(scores, targets, label_format)
    metrics = {"mAP": mean_average_precision(aps)}
    metrics.update(threshold_metrics(scores, targets, label_format, threshold))
    top3 = threshold_metrics(top_k(scores, 3), targets, label_format, threshold)
    metrics.update({f"{k}_top3": v for k, v in top3.items()})
    return {k: 100.0 * float(v) for k, v in metrics.items()}, aps
