"""Pictures of an evaluation: precision-recall curves per class and the per-class AP bar chart (PNG)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from csra.evaluate.metrics import precision_recall_curve  # noqa: E402
from csra.fileio import atomic_write  # noqa: E402

MAX_POINTS = 400  # per curve: enough for the eye, small enough for 80 classes x 40k images


def _save(fig: plt.Figure, path: Path) -> Path:
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    finally:
        plt.close(fig)


def plot_pr_curves(
    scores: np.ndarray, targets: np.ndarray, label_format: str, classes: list[str], aps: np.ndarray, path: Path
) -> Path:
    """One small precision-recall plot per class, titled with its AP, in a grid."""
    cols = math.ceil(math.sqrt(len(classes)))
    rows = math.ceil(len(classes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.0 * rows), sharex=True, sharey=True, squeeze=False)
    for c, ax in enumerate(axes.flat):
        if c >= len(classes):
            ax.axis("off")
            continue
        recall, precision = precision_recall_curve(scores[:, c], targets[:, c], label_format)
        step = max(1, len(recall) // MAX_POINTS)
        ax.plot(recall[::step], precision[::step], lw=1.2)
        ax.set_title(f"{classes[c]}  AP {100 * aps[c]:.1f}" if not math.isnan(aps[c]) else f"{classes[c]}  no positive",
                     fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=6)
    fig.supxlabel("recall")
    fig.supylabel("precision")
    fig.tight_layout()
    return _save(fig, path)


def plot_ap_bars(classes: list[str], aps: np.ndarray, path: Path) -> Path:
    """Per-class AP as horizontal bars, lowest at the top."""
    values = np.nan_to_num(100 * aps, nan=0.0)
    order = np.argsort(values)
    fig, ax = plt.subplots(figsize=(6, 0.6 + 0.22 * len(classes)))
    ax.barh([classes[i] for i in order], values[order], color="tab:blue")
    ax.invert_yaxis()  # first bar (lowest AP) on top
    ax.set_xlim(0, 100)
    ax.set_xlabel("AP (%)")
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return _save(fig, path)
