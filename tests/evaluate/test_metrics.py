import math
from fractions import Fraction

import numpy as np
import pytest
from official_metrics import official_ap, official_threshold_metrics, official_top3

from csra.evaluate.metrics import (
    average_precision,
    evaluate_scores,
    per_class_table,
    precision_recall_curves,
    rank,
    threshold_metrics,
    top_k,
    tune_thresholds,
)


def test_ap_hand_computed():
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    assert average_precision(scores, np.array([[1], [0], [1], [0]]))[0] == pytest.approx((1 + 2 / 3) / 2)


def test_voc07_ignores_difficult_and_reads_minus_one_as_negative():
    scores = np.array([[0.5], [0.9], [0.8], [0.7]])
    targets = np.array([[1], [0], [-1], [1]])
    # without the difficult image: 0.8 (neg), 0.7 (pos), 0.5 (pos) → (1/2 + 2/3) / 2
    assert average_precision(scores, targets, "voc07")[0] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_wider_ignores_99_for_ap_but_counts_it_negative_for_thresholds():
    scores = np.array([[0.9], [0.8], [0.3]])
    targets = np.array([[99], [1], [0]])
    assert average_precision(scores, targets, "wider")[0] == pytest.approx(1.0)
    m = threshold_metrics(scores, targets, "wider")
    assert m["OP"] == pytest.approx(1 / 2) and m["OR"] == pytest.approx(1.0)


def test_threshold_metrics_hand_computed():
    scores = np.array([[0.9, 0.2], [0.6, 0.7], [0.3, 0.5]])
    targets = np.array([[1, 0], [0, 1], [1, 0]])
    m = threshold_metrics(scores, targets, "coco", 0.5)
    # class 0: 2 predicted, 2 positives, 1 hit; class 1: 2 predicted (0.5 counts), 1 positive, 1 hit
    assert m["CP"] == pytest.approx(0.5) and m["CR"] == pytest.approx(0.75)
    assert m["CF1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    assert m["OP"] == pytest.approx(2 / 4) and m["OR"] == pytest.approx(2 / 3)
    assert m["OF1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))


def test_class_without_prediction_counts_as_zero_precision():
    scores = np.array([[0.9, 0.1], [0.2, 0.2]])
    targets = np.array([[1, 1], [0, 0]])
    m = threshold_metrics(scores, targets, "coco")
    assert m["CP"] == pytest.approx((1 + 0) / 2) and m["CR"] == pytest.approx((1 + 0) / 2)


@pytest.mark.parametrize("label_format", ["coco", "voc07", "wider"])
def test_ap_equals_official_reference_with_ties(label_format):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 10, size=(60, 5)) / 10  # many ties
    codes = {"coco": [0, 1], "voc07": [-1, 0, 1], "wider": [0, 1, 99]}[label_format]
    targets = rng.choice(codes, size=(60, 5))
    targets[0] = 1
    got = average_precision(scores, targets, label_format)
    for c in range(5):
        assert got[c] == pytest.approx(official_ap(scores[:, c], targets[:, c], label_format), abs=1e-12)


def test_class_without_positive_is_nan_and_left_out_of_means():
    scores = np.array([[0.9, 0.8], [0.1, 0.7]])
    targets = np.array([[1, -1], [-1, -1]])
    metrics, aps = evaluate_scores(scores, targets, "voc07", 0.5)
    assert aps[0] == 1.0 and math.isnan(aps[1])
    assert metrics["mAP"] == pytest.approx(100.0)
    assert metrics["CR"] == pytest.approx(100.0)  # only class 0 counts


@pytest.mark.parametrize("label_format", ["coco", "voc07", "wider"])
def test_threshold_metrics_equal_official_reference(label_format):
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 20, size=(80, 6)) / 20  # scores exactly on the threshold too
    codes = {"coco": [0, 1], "voc07": [-1, 0, 1], "wider": [0, 1, 99]}[label_format]
    targets = rng.choice(codes, size=(80, 6))
    targets[:2] = 1
    got = threshold_metrics(scores, targets, label_format, 0.5)
    expected = official_threshold_metrics(scores, targets, label_format, 0.5)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize("label_format", ["coco", "voc07", "wider"])
def test_top3_metrics_equal_official_reference(label_format):
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 20, size=(80, 6)) / 20  # ties inside an image's three highest too
    codes = {"coco": [0, 1], "voc07": [-1, 0, 1], "wider": [0, 1, 99]}[label_format]
    targets = rng.choice(codes, size=(80, 6))
    targets[:2] = 1
    metrics, _ = evaluate_scores(scores, targets, label_format, 0.5)
    expected = official_threshold_metrics(official_top3(scores), targets, label_format, 0.5)
    for key, value in expected.items():
        assert metrics[f"{key}_top3"] == pytest.approx(100 * value, abs=1e-10), key


def test_top3_keeps_three_highest_per_image_then_thresholds():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.55], [0.1, 0.2, 0.3, 0.95, 0.6]])
    assert top_k(scores, 3).tolist() == [[0.9, 0.8, 0.7, 0.0, 0.0], [0.0, 0.0, 0.3, 0.95, 0.6]]
    targets = np.array([[1, 0, 0, 1, 1], [0, 0, 0, 1, 1]])
    metrics, _ = evaluate_scores(scores, targets, "coco", 0.5)
    # top-3 predictions: image 0 → classes 0, 1, 2; image 1 → classes 3, 4: 3 hits of 5 predictions, 5 positives
    assert metrics["OP_top3"] == pytest.approx(100 * 3 / 5) and metrics["OR_top3"] == pytest.approx(100 * 3 / 5)
    # all of them: 7 predictions, 5 hits
    assert metrics["OP"] == pytest.approx(100 * 5 / 7) and metrics["OR"] == pytest.approx(100.0)


def test_top3_ties_follow_argsort_order_of_each_row():
    rng = np.random.default_rng(2)
    scores = rng.integers(0, 3, size=(50, 8)) / 2
    for row, kept in zip(scores, top_k(scores, 3)):
        keep = np.argsort(-row)[:3]
        assert np.array_equal(np.flatnonzero(kept), np.sort(keep[row[keep] > 0]))


def test_per_class_table():
    scores = np.array([[0.9, 0.2, 0.1], [0.6, 0.7, 0.2], [0.3, 0.5, 0.9]])
    targets = np.array([[1, 0, -1], [-1, 1, -1], [1, -1, 0]])
    table = per_class_table(scores, targets, "voc07", 0.5)
    assert table["precision"].tolist() == [0.5, 0.5, 0.0]  # class 2: its only prediction is on a difficult image
    assert table["recall"][:2].tolist() == [0.5, 1.0] and math.isnan(table["recall"][2])
    assert table["support"].tolist() == [2, 1, 0]


def test_tuned_thresholds_maximise_f1_per_class():
    scores = np.array([[0.9, 0.4, 0.2], [0.8, 0.3, 0.1], [0.35, 0.3, 0.3], [0.1, 0.6, 0.05]])
    targets = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
    thresholds = tune_thresholds(scores, targets, "coco")
    # class 0: cutting at 0.8 catches both positives and nothing else (F1 1)
    # class 1: 0.3 (tied pair kept together) → 3 hits of 4 predictions, F1 6/7 beats 0.4 (F1 2/5) and 0.6 (0)
    assert thresholds[0] == 0.8 and thresholds[1] == 0.3 and math.isnan(thresholds[2])
    f1 = per_class_table(scores, targets, "coco", np.nan_to_num(thresholds, nan=0.5))["F1"]
    assert f1[0] == 1.0 and f1[1] == pytest.approx(6 / 7)


def test_tuned_threshold_ties_of_f1_go_to_the_higher_threshold():
    # cutting after 0.9 (1 of 1 right) or after 0.6 (2 of 4 right) both give F1 2/3; 0.9 is kept
    scores = np.array([[0.9], [0.8], [0.7], [0.6]])
    assert tune_thresholds(scores, np.array([[1], [0], [0], [1]]), "coco")[0] == 0.9
    # the same with the order of the tied cuts reversed in the file
    assert tune_thresholds(scores[::-1], np.array([[1], [0], [0], [1]]), "coco")[0] == 0.9


def test_tuned_threshold_cuts_only_after_a_whole_group_of_equal_scores():
    # a threshold of 0.5 predicts all four 0.5s (1 right of 5 predictions, F1 4/7), not just the positive among
    # them (which would look like F1 1): 0.9 (1 of 1, F1 2/3) is the best threshold
    scores = np.array([[0.9], [0.5], [0.5], [0.5], [0.5]])
    targets = np.array([[1], [1], [0], [0], [0]])
    assert tune_thresholds(scores, targets, "coco")[0] == 0.9
    assert tune_thresholds(scores[::-1], targets[::-1], "coco")[0] == 0.9


def brute_force_threshold(score, target, label_format):
    """The highest of the class's scores t whose predictions score >= t give the best F1 (exact fractions)."""
    keep = target != 0 if label_format == "voc07" else np.ones(len(target), dtype=bool)
    score, positive = score[keep], target[keep] == 1
    best, best_t = Fraction(-1), None
    for t in sorted(set(score.tolist()), reverse=True):
        predicted = score >= t
        f1 = Fraction(2 * int((predicted & positive).sum()), int(predicted.sum()) + int(positive.sum()))
        if f1 > best:
            best, best_t = f1, t
    return best_t


@pytest.mark.parametrize("label_format", ["coco", "voc07"])
def test_tuned_thresholds_equal_a_brute_force_search(label_format):
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 8, size=(60, 12)) / 8  # many ties
    codes = [-1, 1] if label_format == "coco" else [-1, 0, 1]
    targets = rng.choice(codes, size=scores.shape)
    if label_format == "coco":
        targets = (targets == 1).astype(int)
    tuned = tune_thresholds(scores, targets, label_format)
    for c in range(scores.shape[1]):
        assert tuned[c] == brute_force_threshold(scores[:, c], targets[:, c], label_format), c
def loop_average_precision(scores, targets, label_format):
    """average_precision as it was, class by class: argsort of each class's counted images, then np.mean."""
    aps = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        keep = targets[:, c] != {"voc07": 0, "wider": 99}.get(label_format, np.inf)
        hits = (targets[keep, c] == 1)[np.argsort(-scores[keep, c])]
        ranks = np.flatnonzero(hits) + 1.0
        if len(ranks):
            aps[c] = np.mean(np.arange(1, len(ranks) + 1) / ranks)
    return aps


def loop_tune_thresholds(scores, targets, label_format):
    """tune_thresholds as it was: per class, a stable sort and the F1 after each whole group of equal scores."""
    thresholds = np.full(scores.shape[1], np.nan)
    for c in range(scores.shape[1]):
        keep = targets[:, c] != 0 if label_format == "voc07" else np.ones(len(scores), bool)
        score, hit = scores[keep, c], targets[keep, c] == 1
        if hit.any():
            order = np.argsort(-score, kind="stable")
            score, found = score[order], np.cumsum(hit[order])
            last_of_tie = np.append(score[1:] != score[:-1], True)
            f1 = np.where(last_of_tie, 2 * found / (np.arange(1, len(score) + 1) + hit.sum()), -1.0)
            thresholds[c] = score[int(np.argmax(f1))]
    return thresholds


def tied_case(label_format, seed, images=700, classes=7, nan=False):
    """Scores on 2 decimals (many ties), ~5-30 % positives, ignored codes, a class without any positive."""
    rng = np.random.default_rng(seed)
    scores = rng.random((images, classes)).round(2)
    positive = rng.random((images, classes)) < rng.uniform(0.05, 0.3, classes)
    negative, ignored = {"coco": (0, None), "voc07": (-1, 0), "wider": (0, 99)}[label_format]
    targets = np.where(positive, 1, negative)
    if ignored is not None:
        targets[rng.random((images, classes)) < 0.1] = ignored
    targets[:, 1][targets[:, 1] == 1] = negative
    if nan:
        scores[rng.random((images, classes)) < 0.03] = np.nan
    return scores, targets


@pytest.mark.parametrize("label_format", ["coco", "voc07", "wider"])
@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_metrics_equal_the_class_loops_bit_for_bit(label_format, seed):
    scores, targets = tied_case(label_format, seed)
    aps = average_precision(scores, targets, label_format)
    np.testing.assert_array_equal(aps, loop_average_precision(scores, targets, label_format))
    assert math.isnan(aps[1]) and not np.isnan(np.delete(aps, 1)).any()
    for c, (recall, precision) in enumerate(precision_recall_curves(scores, targets, label_format)):
        keep = targets[:, c] != {"voc07": 0, "wider": 99}.get(label_format, np.inf)
        hits = (targets[keep, c] == 1)[np.argsort(-scores[keep, c])]
        np.testing.assert_array_equal(precision, np.cumsum(hits) / np.arange(1, len(hits) + 1))
        np.testing.assert_array_equal(recall, np.cumsum(hits) / max(hits.sum(), 1))
    for nan in (False, True):
        scores, targets = tied_case(label_format, seed, nan=nan)
        np.testing.assert_array_equal(tune_thresholds(scores, targets, label_format),
                                      loop_tune_thresholds(scores, targets, label_format))


def official_curve(score, target, label_format):
    """(recall, precision) after each rank, step by step as official_ap walks them: its ignore rules, its
    np.argsort(-score) order, a Python loop over the ranks (no csra code)."""
    predict, target = np.array(score, dtype=np.float64), np.array(target, dtype=np.float64)
    ignored = {"voc07": 0, "wider": 99}.get(label_format)
    if ignored is not None:
        kept = np.where(target != ignored)[0]
        predict, target = predict[kept], target[kept]
    target = target[np.argsort(-predict)]
    positives = float(np.sum(target == 1))
    found, recall, precision = 0.0, [], []
    for n, label in enumerate(target, start=1):
        found += label == 1
        recall.append(found / max(positives, 1.0))
        precision.append(found / n)
    return np.array(recall), np.array(precision)


@pytest.mark.parametrize("label_format", ["coco", "voc07", "wider"])
def test_one_ranking_gives_the_official_ap_and_curves_equal_to_an_independent_walk(label_format):
    scores, targets = tied_case(label_format, seed=2)
    ranking = rank(scores, targets, label_format)
    aps = ranking.average_precision()
    np.testing.assert_array_equal(aps, average_precision(scores, targets, label_format))
    np.testing.assert_array_equal(evaluate_scores(scores, targets, label_format, 0.5, ranking)[1], aps)
    for c, (recall, precision) in enumerate(ranking.curves()):
        expected_recall, expected_precision = official_curve(scores[:, c], targets[:, c], label_format)
        np.testing.assert_array_equal(recall, expected_recall)
        np.testing.assert_array_equal(precision, expected_precision)
        if c == 1:  # the class without positive: no AP, a flat curve
            assert math.isnan(aps[c]) and not recall.any()
            continue
        assert aps[c] == pytest.approx(official_ap(scores[:, c], targets[:, c], label_format), abs=1e-12)
        steps = np.diff(recall, prepend=0.0)  # the AP is the area under the step curve
        assert aps[c] == pytest.approx(np.sum(steps * precision), abs=1e-12)


def test_top_k_equals_the_argsort_of_each_row_with_ties_and_nan():
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 6, size=(400, 12)) / 5
    scores[rng.random(scores.shape) < 0.05] = np.nan
    for k in (0, 1, 3, 11, 12, 13):
        expected = scores.copy()
        np.put_along_axis(expected, np.argsort(-scores, axis=1)[:, k:], 0.0, axis=1)
        np.testing.assert_array_equal(top_k(scores, k), expected)
