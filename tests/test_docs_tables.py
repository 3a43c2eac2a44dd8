"""The docs' tables (and conf/config.yaml's comment) list exactly what the code declares once: the backbones
(csra/model/zoo.py), the datasets (csra/data/datasets.py), evaluate's metrics (csra/evaluate/metrics.py) and the
settings a resume may change (their role, csra/train/config.py)."""

from __future__ import annotations

import re

from helpers import REPO

from csra.data.datasets import DATASETS
from csra.evaluate.metrics import METRICS
from csra.model.zoo import ALIASES, BACKBONES
from csra.train.config import RESUMABLE_CHANGES

NAME = re.compile(r"`([^`]+)`")


def rows(page: str) -> list[list[str] | None]:
    """The cells of every table row of the docs page; None for a line outside a table."""
    lines = (REPO / "docs" / page).read_text(encoding="utf-8").splitlines()
    return [[c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else None
            for line in lines]


def column(page: str, header: str) -> set[str]:
    """The names in code spans in the first column of the table whose first header is header."""
    names: set[str] = set()
    inside = False
    for cells in rows(page):
        if cells is None or cells[0] == header:
            inside = cells is not None
        elif inside and not set(cells[0]) <= set("-: "):
            names |= set(NAME.findall(cells[0]))
    return names


def cell(page: str, key: str) -> set[str]:
    """The names in code spans in the second cell of the row whose first cell is `key`."""
    return set(NAME.findall(next(cells[1] for cells in rows(page) if cells and cells[0] == f"`{key}`")))


def test_the_models_and_settings_pages_list_every_backbone_of_the_zoo():
    assert column("models.md", "`train.model`") == set(BACKBONES) | set(ALIASES)
    assert cell("settings.md", "train.model") == set(BACKBONES)


def test_the_pages_and_the_params_comment_list_every_dataset():
    converted = {name for name, entry in DATASETS.items() if entry.converter}  # all but the generated one
    assert column("datasets.md", "dataset") == converted
    assert column("own-data.md", "`data.dataset`") == converted  # the layout table
    assert cell("settings.md", "data.dataset") == set(DATASETS)
    comment = next(line for line in (REPO / "conf" / "config.yaml").read_text().splitlines()
                   if line.strip().startswith("dataset:"))
    assert set(re.findall(r"\w+", comment.split("#", 1)[1])) - {"built", "in"} == set(DATASETS)


def test_the_settings_page_lists_every_metric_that_can_elect_the_champion():
    assert cell("settings.md", "export.champion_metric") == set(METRICS)


def test_the_training_page_names_the_settings_a_resume_may_change():
    text = " ".join((REPO / "docs" / "training.md").read_text(encoding="utf-8").split())
    sentence = re.search(r"\(exactly, on CPU\)\. ([^.]*) may change between the two", text)
    assert sentence and set(NAME.findall(sentence.group(1))) == set(RESUMABLE_CHANGES)
