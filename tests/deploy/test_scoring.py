"""The demo's decision rule: a class is predicted when its score reaches its threshold (score ≥ threshold), with the
global threshold or the per-class ones a checkpoint stores; the official demo line."""

import pytest

from csra.deploy.scoring import class_thresholds, demo_line, predicted_labels
from csra.errors import CSRAError

CLASSES = ["circle", "square", "triangle", "star"]


def test_a_score_equal_to_the_threshold_is_predicted():
    scores = [0.5, 0.4999999, 0.75, 1.0]
    assert predicted_labels(scores, CLASSES, [0.5] * 4) == ["circle", "triangle", "star"]
    assert predicted_labels(scores, CLASSES, [0.5, 0.4999999, 0.75, 1.0]) == CLASSES  # every score on its own
    assert predicted_labels(scores, CLASSES, [0.0] * 4) == CLASSES
    assert predicted_labels([0.0] * 4, CLASSES, [0.0] * 4) == CLASSES  # threshold 0: everything
    assert predicted_labels(scores, CLASSES, [1.0] * 4) == ["star"]


def test_the_demo_line_is_the_official_form():
    line = demo_line("img/a.jpg", [0.9, 0.2, 0.6, 0.6], CLASSES, [0.5, 0.5, 0.6, 0.7])
    assert line == "img/a.jpg prediction: circle,triangle,"
    assert demo_line("b.png", [0.1] * 4, CLASSES, [0.5] * 4) == "b.png prediction: "


def test_per_class_thresholds_come_from_the_checkpoint_with_the_global_one_for_untuned_classes():
    assert class_thresholds(3, 0.5) == [0.5, 0.5, 0.5]
    assert class_thresholds(3, 0.5, [0.2, 0.3, 0.4]) == [0.5, 0.5, 0.5]  # global unless per_class is asked for
    assert class_thresholds(3, 0.5, [0.2, None, 0.4], per_class=True) == [0.2, 0.5, 0.4]
    assert class_thresholds(3, 0.7, [0.2, None, 0.4], per_class=True) == [0.2, 0.7, 0.4]  # not 0.5
    with pytest.raises(CSRAError, match="best.pt: no per-class thresholds stored"):
        class_thresholds(3, 0.5, None, per_class=True, source="best.pt")
