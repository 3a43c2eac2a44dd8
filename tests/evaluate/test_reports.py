import numpy as np
from PIL import Image

from csra.evaluate.metrics import average_precision, precision_recall_curve
from csra.evaluate.reports import plot_ap_bars, plot_pr_curves


def test_precision_recall_curve_hand_computed():
    recall, precision = precision_recall_curve(np.array([0.9, 0.8, 0.7, 0.6]), np.array([1, 0, 1, 0]), "coco")
    assert recall.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert np.allclose(precision, [1.0, 0.5, 2 / 3, 0.5])


def test_curve_follows_the_ignore_rules():
    recall, precision = precision_recall_curve(np.array([0.9, 0.8, 0.7]), np.array([0, -1, 1]), "voc07")
    assert recall.tolist() == [0.0, 1.0] and precision.tolist() == [0.0, 0.5]


def test_pngs_are_written(tmp_path):
    rng = np.random.default_rng(0)
    scores, targets = rng.random((30, 5)), rng.integers(0, 2, (30, 5))
    targets[:, 4] = 0  # a class without positive is drawn too
    aps = average_precision(scores, targets)
    classes = ["a", "b", "c", "d", "e"]
    for path in (plot_pr_curves(scores, targets, "coco", classes, aps, tmp_path / "p/pr.png"),
                 plot_ap_bars(classes, aps, tmp_path / "p/ap.png")):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 200
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ap.png", "pr.png"]
