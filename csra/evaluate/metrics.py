"""Multi-label metrics exactly as the official CSRA evaluation: AP/mAP, CP/CR/CF1/OP/OR/OF1 and their top-3 form.

Label formats: voc07 ignores 0 (difficult) per class and reads -1 as negative; wider ignores 99 for AP but, as the
official code does, counts it as negative in the threshold metrics; coco and training files are plain 0/1.
A prediction is score >= threshold. A class without any positive gets NaN and is left out of the class means
(the official code fails on it); `evaluate_scores` reports which.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD_METRICS = ("CP", "CR", "CF1", "OP", "OR", "OF1")
HIGHER, LOWER = "higher", "lower"  # which way a metric is better
# evaluate_scores' metrics, in its order, each with its direction: the one declaration of a metric's name and way
METRICS: dict[str, str] = {"mAP": HIGHER, **{name: HIGHER for name in THRESHOLD_METRICS},
                           **{f"{name}_top3": HIGHER for name in THRESHOLD_METRICS}}
METRIC_NAMES = tuple(METRICS)


def better(metric: str, value: float, than: float) -> bool:
    """Whether value of metric beats than (strictly), in the metric's declared direction."""
    return value > than if METRICS[metric] == HIGHER else value < than


def best_first(metric: str, value: float) -> float:
    """A sort key that puts the best value of metric first in ascending order (min picks the best)."""
    return -value if METRICS[metric] == HIGHER else value


def _labels(targets: np.ndarray, label_format: str, for_ap: bool) -> tuple[np.ndarray, np.ndarray]:
    """(counted, positive) boolean masks of the targets under the label format's ignore rules."""
    if label_format == "voc07":
        counted = targets != 0
    elif label_format == "wider" and for_ap:
        counted = targets != 99
    else:
        counted = np.ones(targets.shape, dtype=bool)
    return counted, counted & (targets == 1)


@dataclass(frozen=True)
class Ranking:
    """Every class's counted images in np.argsort(-score) order over those images only (the official tie order):
    row c of hits holds their positive flags, best first, padded with False to N; counted[c] is how many there are.
    One sort per class, from which both the AP and the precision-recall curve are read."""

    hits: np.ndarray  # (K, N) bool
    counted: np.ndarray  # (K,) int

    def average_precision(self) -> np.ndarray:
        """AP per class: the mean of the precision at each positive's rank; NaN for a class without positive."""
        rows, ranks = np.nonzero(self.hits)  # class by class, best rank first
        found = np.bincount(rows, minlength=self.hits.shape[0])
        nth = np.arange(1, len(rows) + 1) - (np.cumsum(found) - found)[rows]  # 1 for each class's first positive, ...
        precisions = nth / (ranks + 1.0)
        # one sum per class over its own values: the same pairwise summation, so the same bits, as np.mean per class
        sums = np.array([part.sum() for part in np.split(precisions, np.cumsum(found)[:-1])])
        with np.errstate(invalid="ignore"):
            return np.where(found > 0, sums / found, np.nan)

    def curves(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(recall, precision) of every class after each of its counted images in rank order (recall 0 throughout
        for a class without positive)."""
        found = np.cumsum(self.hits, axis=1)
        recall = found / np.maximum(found[:, -1:], 1)
        precision = found / np.arange(1, found.shape[1] + 1)
        return [(recall[c, :n], precision[c, :n]) for c, n in enumerate(self.counted)]


def rank(scores: np.ndarray, targets: np.ndarray, label_format: str) -> Ranking:
    """Each class's counted images (the AP's ignore rules) ranked by descending score, as the official code does.

    Classes without an ignored image are sorted in one call; np.argsort sorts each row with the same routine as a
    1-D call, so ties fall the same way. A class with ignored images is sorted on its own: the unstable sort's
    order within ties depends on which values are in the array, and the AP depends on that order.
    """
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    counted, positive = _labels(targets, label_format, for_ap=True)
    minus, flags = np.ascontiguousarray(-scores.T), np.ascontiguousarray(positive.T)
    hits = np.zeros(flags.shape, dtype=bool)
    whole = counted.all(axis=0)
    if whole.any():
        hits[whole] = np.take_along_axis(flags[whole], np.argsort(minus[whole], axis=1), axis=1)
    for c in np.flatnonzero(~whole):
        keep = counted[:, c]
        hits[c, : keep.sum()] = flags[c, keep][np.argsort(minus[c, keep])]
    return Ranking(hits, counted.sum(axis=0))


def average_precision(scores: np.ndarray, targets: np.ndarray, label_format: str = "coco") -> np.ndarray:
    """AP per class: counted images sorted by descending score, mean of the precision at each positive's rank.

    Sorted with np.argsort(-score) after dropping ignored images, as the official code does, so ties fall in the
    same order and the result is the same number.
    """
    return rank(scores, targets, label_format).average_precision()


def precision_recall_curves(
    scores: np.ndarray, targets: np.ndarray, label_format: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    """precision_recall_curve of every class, sorted as average_precision sorts them."""
    return rank(scores, targets, label_format).curves()


def precision_recall_curve(score: np.ndarray, target: np.ndarray, label_format: str) -> tuple[np.ndarray, ...]:
    """(recall, precision) after each image of one class in descending score order, the AP's ignore rules applied."""
    return precision_recall_curves(np.reshape(score, (-1, 1)), np.reshape(target, (-1, 1)), label_format)[0]


def mean_average_precision(aps: np.ndarray) -> float:
    """Mean of the per-class APs over the classes that have a positive (NaN if none has)."""
    return float(np.nanmean(aps)) if not np.isnan(aps).all() else float("nan")


def top_k(scores: np.ndarray, k: int = 3) -> np.ndarray:
    """Scores with all but the k highest of each image set to 0 (ties ordered as np.argsort(-row)).

    Where the k-th and the next highest score differ the k kept are plain; only rows with a tie across that
    boundary (or NaN) need the argsort to know which of the tied scores it keeps.
    """
    scores = np.array(scores, dtype=np.float64)
    if k >= scores.shape[1]:
        return scores
    keep = np.zeros(scores.shape, dtype=bool)
    if k > 0:
        keep = scores >= -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    tied = np.flatnonzero(keep.sum(axis=1) != k)
    ranked = np.zeros((len(tied), scores.shape[1]), dtype=bool)
    np.put_along_axis(ranked, np.argsort(-scores[tied], axis=1)[:, :k], True, axis=1)
    keep[tied] = ranked
    return np.where(keep, scores, 0.0)


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
    F1 is read only after a whole group of equal scores, so the order within ties does not matter, and ignored
    images, sorted in with the rest, add nothing to the counts: a group of them only repeats the F1 before it.
    """
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    counted, positive = _labels(targets, label_format, for_ap=False)
    if not len(scores):
        return np.full(scores.shape[1], np.nan)
    minus = np.ascontiguousarray(-scores.T)  # one class per row: sorting and gathering along rows is faster
    # NaNs are each their own group: keep them in image order, as the per-class stable sort did
    order = np.argsort(minus, axis=1, kind="stable" if np.isnan(minus).any() else None)
    score = -np.take_along_axis(minus, order, axis=1)
    found = np.cumsum(np.take_along_axis(np.ascontiguousarray((positive & counted).T), order, axis=1), axis=1)
    predicted = np.cumsum(np.take_along_axis(np.ascontiguousarray(counted.T), order, axis=1), axis=1)
    last_of_tie = np.append(score[:, 1:] != score[:, :-1], np.ones((len(score), 1), bool), axis=1)
    with np.errstate(invalid="ignore"):  # 0 / 0 only in a class without positive
        f1 = np.where(last_of_tie, 2 * found / (predicted + found[:, -1:]), -1.0)
    best = score[np.arange(len(score)), np.argmax(f1, axis=1)]
    return np.where(found[:, -1] > 0, best, np.nan)


def evaluate_scores(
    scores: np.ndarray, targets: np.ndarray, label_format: str, threshold: float, ranking: Ranking | None = None
) -> tuple[dict[str, float], np.ndarray]:
    """(metrics in percent: mAP, the six threshold metrics and their top-3 forms `<name>_top3`,
    AP per class as fractions with NaN for a class without positive). ranking: rank(scores, targets, label_format)
    when the caller has it (it also draws the curves from it); else it is made here."""
    scores, targets = np.asarray(scores, np.float64), np.asarray(targets)
    aps = (ranking or rank(scores, targets, label_format)).average_precision()
    metrics = {"mAP": mean_average_precision(aps)}
    metrics.update(threshold_metrics(scores, targets, label_format, threshold))
    top3 = threshold_metrics(top_k(scores, 3), targets, label_format, threshold)
    metrics.update({f"{k}_top3": v for k, v in top3.items()})
    return {k: 100.0 * float(v) for k, v in metrics.items()}, aps
