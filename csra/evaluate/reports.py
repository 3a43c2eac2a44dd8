"""Pictures of an evaluation: precision-recall curves per class and the per-class AP bar chart (PNG), each drawn
on one matplotlib canvas (imported only to draw), well under a second for 80 classes × 40k images."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from csra.fileio import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_POINTS = 400  # per curve: enough for the eye, small enough for 80 classes x 40k images
DPI = 100
CELL = (2.0, 1.8)  # inches per class in the curve grid
PLOT_BOX = (0.16, 0.95, 0.17, 0.84)  # left, right, top, bottom of the axes inside a cell, in cell units
TICKS = (0.0, 0.5, 1.0)
MARGIN = 0.45  # inches around the grid, for the axis names


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def _thin(recall: np.ndarray, precision: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Every step-th point of a curve, about max_points in all, keeping the first and the last."""
    step = max(1, len(recall) // max_points)
    keep = np.unique(np.append(np.arange(0, len(recall), step), len(recall) - 1)) if len(recall) else []
    return recall[keep], precision[keep]


def _cell_xy(col: int, row: int, recall: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Points of a cell's plot in grid units (x right, y down): recall 0..1 across, precision 0..1.02 up."""
    left, right, top, bottom = PLOT_BOX
    x = col + left + np.asarray(recall) * (right - left)
    y = row + bottom - np.asarray(precision) / 1.02 * (bottom - top)
    return np.column_stack([x, y])


def _cell_frame(col: int, row: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(the plot's box, its light grid lines at the ticks) as polylines in grid units."""
    corners = _cell_xy(col, row, [0, 1, 1, 0, 0], [0, 0, 1.02, 1.02, 0])
    grid = [_cell_xy(col, row, [t, t], [0, 1.02]) for t in TICKS[1:-1]]
    grid += [_cell_xy(col, row, [0, 1], [t, t]) for t in TICKS[1:]]
    return [corners], grid


def _tick_labels(ax, col: int, row: int, left: bool, bottom: bool) -> None:
    for t in TICKS:
        if left:
            x, y = _cell_xy(col, row, [0], [t])[0]
            ax.text(x - 0.03, y, f"{t:g}", ha="right", va="center", fontsize=6)
        if bottom:
            x, y = _cell_xy(col, row, [t], [0])[0]
            ax.text(x, y + 0.03, f"{t:g}", ha="center", va="top", fontsize=6)


def plot_pr_curves(
    curves: Sequence[tuple[np.ndarray, np.ndarray]], classes: list[str], aps: np.ndarray, path: Path
) -> Path:
    """One small precision-recall plot per class, titled with its AP, in a grid: curves holds each class's
    (recall, precision), as Ranking.curves gives them from the ranking the AP was computed on."""
    from matplotlib.collections import LineCollection

    cols = math.ceil(math.sqrt(len(classes)))
    rows = math.ceil(len(classes) / cols)
    width, height = CELL[0] * cols + 2 * MARGIN, CELL[1] * rows + 2 * MARGIN
    fig = _figure(width, height)
    ax = fig.add_axes((MARGIN / width, MARGIN / height, 1 - 2 * MARGIN / width, 1 - 2 * MARGIN / height))
    ax.set_xlim(0, cols)
    ax.set_ylim(rows, 0)
    ax.axis("off")
    drawn, frames, grid = [], [], []
    for c, (recall, precision) in enumerate(curves):
        row, col = divmod(c, cols)
        drawn.append(_cell_xy(col, row, *_thin(recall, precision)))
        box, lines = _cell_frame(col, row)
        frames += box
        grid += lines
        title = f"{classes[c]}  AP {100 * aps[c]:.1f}" if not math.isnan(aps[c]) else f"{classes[c]}  no positive"
        x, y = _cell_xy(col, row, [0.5], [1.02])[0]
        ax.text(x, y - 0.03, title, ha="center", va="bottom", fontsize=8)
        _tick_labels(ax, col, row, left=col == 0, bottom=c + cols >= len(classes))
    ax.add_collection(LineCollection(grid, colors="0.88", linewidths=0.6))
    ax.add_collection(LineCollection(frames, colors="0.25", linewidths=0.8))
    ax.add_collection(LineCollection(drawn, colors="tab:blue", linewidths=1.2))
    fig.text(0.5, 0.3 * MARGIN / height, "recall", ha="center", va="center")
    fig.text(0.3 * MARGIN / width, 0.5, "precision", ha="center", va="center", rotation=90)
    return _save(fig, path)


def plot_ap_bars(classes: list[str], aps: np.ndarray, path: Path) -> Path:
    """Per-class AP as horizontal bars, lowest at the top."""
    from matplotlib.collections import PolyCollection
    from matplotlib.transforms import offset_copy

    values = np.nan_to_num(100 * aps, nan=0.0)
    order = np.argsort(values)
    width, height = 6.0, 0.6 + 0.22 * len(classes)
    fig = _figure(width, height)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(len(classes) - 0.5, -0.5)  # first bar (lowest AP) on top
    ax.set_yticks([])
    ax.set_xlabel("AP (%)")
    ax.tick_params(labelsize=7)
    ax.add_collection(PolyCollection([[(0, i - 0.4), (v, i - 0.4), (v, i + 0.4), (0, i + 0.4)]
                                      for i, v in enumerate(values[order])], facecolors="tab:blue"))
    beside = offset_copy(ax.get_yaxis_transform(), fig, x=-4, units="points")  # 4 pt left of the axes
    names = [ax.text(0, i, classes[c], transform=beside, ha="right", va="center", fontsize=7)
             for i, c in enumerate(order)]
    renderer = fig.canvas.get_renderer()
    widest = max((name.get_window_extent(renderer).width for name in names), default=0.0)
    left, bottom = (widest + 12) / (width * DPI), 0.45 / height
    ax.set_position((left, bottom, 0.96 - left, 1 - bottom - 0.1 / height))
    return _save(fig, path)
