import math

import numpy as np
import pytest

from csra.metrics import average_precision, evaluate_scores, threshold_metrics


def loop_ap(score, target, label_format):
    """AP as the official evaluation defines it, one class, written as plain loops."""
    pairs = [(s, t) for s, t in zip(score, target)]
    if label_format == "voc07":
        pairs = [(s, 1 if t == 1 else 0) for s, t in pairs if t != 0]
    elif label_format == "wider":
        pairs = [(s, t) for s, t in pairs if t != 99]
    s = np.array([p[0] for p in pairs])
    t = [pairs[i][1] for i in np.argsort(-s)]
    found, total = 0, 0.0
    for rank, label in enumerate(t, start=1):
        if label == 1:
            found += 1
            total += found / rank
    return total / found


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
def test_ap_equals_loop_reference_with_ties(label_format):
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 10, size=(60, 5)) / 10  # many ties
    codes = {"coco": [0, 1], "voc07": [-1, 0, 1], "wider": [0, 1, 99]}[label_format]
    targets = rng.choice(codes, size=(60, 5))
    targets[0] = 1
    got = average_precision(scores, targets, label_format)
    for c in range(5):
        assert got[c] == pytest.approx(loop_ap(scores[:, c], targets[:, c], label_format), abs=1e-12)


def test_class_without_positive_is_nan_and_left_out_of_means():
    scores = np.array([[0.9, 0.8], [0.1, 0.7]])
    targets = np.array([[1, -1], [-1, -1]])
    metrics, aps = evaluate_scores(scores, targets, "voc07", 0.5)
    assert aps[0] == 1.0 and math.isnan(aps[1])
    assert metrics["mAP"] == pytest.approx(100.0)
    assert metrics["CR"] == pytest.approx(100.0)  # only class 0 counts
