import subprocess
import sys

import numpy as np
from PIL import Image

from csra.evaluate.metrics import average_precision, precision_recall_curve, rank
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
    for path in (plot_pr_curves(rank(scores, targets, "coco").curves(), classes, aps, tmp_path / "p/pr.png"),
                 plot_ap_bars(classes, aps, tmp_path / "p/ap.png")):
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size[0] > 200
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["ap.png", "pr.png"]


def test_figures_are_sized_by_the_number_of_classes(tmp_path):
    rng = np.random.default_rng(1)
    for count, (cols, rows) in ((5, (3, 2)), (20, (5, 4))):
        scores, targets = rng.random((40, count)).round(2), rng.integers(0, 2, (40, count))
        aps = average_precision(scores, targets)
        classes = [f"class {i}" for i in range(count)]
        curves = rank(scores, targets, "coco").curves()
        with Image.open(plot_pr_curves(curves, classes, aps, tmp_path / f"pr{count}.png")) as image:
            pixels = np.asarray(image.convert("RGB")).astype(int)
            assert 150 * cols < image.size[0] < 250 * cols + 100 and 150 * rows < image.size[1] < 250 * rows + 100
            blue = (abs(pixels - [31, 119, 180]).sum(axis=2) < 60).sum()
            assert blue > 100 * count  # every class has its curve drawn
        with Image.open(plot_ap_bars(classes, aps, tmp_path / f"ap{count}.png")) as image:
            assert image.size[0] == 600 and 20 * count < image.size[1] < 25 * count + 100


def test_importing_reports_does_not_import_matplotlib():
    code = "import sys, csra.evaluate.reports; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
