"""docs/own-data.md, as a newcomer reads it: its layout table is what prepare reads, for every dataset, and every
command on the page runs as written, in order, in a scratch clone of the project, on a VOC2007 made of the two
official archives' layout (generated) and COCO, WIDER and CSV folders in theirs — from `tar -xf` to a served
model and a small search."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import shutil

import optuna
import pytest
from docs_runner import Reader, blocks, unactivated_env
from helpers import REPO, new_project, ok
from layouts import (
    write_coco2014,
    write_custom_coco,
    write_custom_csv,
    write_custom_voc,
    write_voc_archives,
    write_wider,
)
from mlflow import MlflowClient

PAGE = REPO / "docs" / "own-data.md"
WRITERS = {"coco": write_coco2014, "wider": write_wider, "custom_csv": write_custom_csv,
           "custom_voc": write_custom_voc, "custom_coco": write_custom_coco}
SPAN = re.compile(r"`([^`\s]+)`")


def layout_table() -> dict[str, tuple[str, list[str]]]:
    """data.dataset → (data.raw_path, the paths the folder holds) from the page's table."""
    section = PAGE.read_text().split("## Layouts", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and (name := SPAN.fullmatch(cells[0])) and cells[1] != "`data.raw_path`":
            paths = [p for p in SPAN.findall(cells[2]) if "/" in p or "." in p]
            rows[name.group(1)] = (SPAN.fullmatch(cells[1]).group(1), [p for p in paths if not re.search(r"[,;]", p)
                                                                      or "{" in p])
    return rows


def expand(pattern: str) -> list[str]:
    """`a/{b,c}.txt` → a/b.txt, a/c.txt."""
    parts = re.split(r"\{([^}]*)\}", pattern)
    choices = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
    return ["".join(c) for c in itertools.product(*choices)]


def test_the_layout_table_is_what_prepare_reads_for_every_dataset(tmp_path, tiny_params):
    table = layout_table()
    assert set(table) == {"voc07", *WRITERS}
    write_voc_archives(tmp_path)
    for name in ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"):
        shutil.unpack_archive(tmp_path / name, tmp_path / "voc")
    folders = {"voc07": tmp_path / "voc" / "VOCdevkit"}
    folders.update({name: write(tmp_path / name) for name, write in WRITERS.items()})
    for dataset, (raw_path, paths) in table.items():
        assert raw_path.startswith("data/raw/"), dataset
        for pattern in paths:
            for path in expand(pattern.rstrip("/")):
                assert list(folders[dataset].glob(path)), f"{dataset}: {path} is not in the generated folder"
        ok("prepare", dataset, "--data-path", folders[dataset], "--out-dir", tmp_path / f"prepared-{dataset}",
           "--check", "--params", tiny_params)


def test_every_block_on_the_page_is_one_the_reader_can_run():
    page = blocks(PAGE)
    assert page and page[0].text.strip() == ". .venv/bin/activate"
    for block in page:
        assert block.lang in ("bash", "yaml") and block.kind in ("run", "server", "fails", "into"), block


@pytest.fixture
def voc_project(tmp_path, mlflow_template):
    """A scratch clone of the project with the environment linked in, an empty MLflow store at its root, the two
    VOC2007 archives beside it and the other datasets already in data/raw/."""
    root = new_project(REPO, tmp_path / "project")
    (root / ".venv").symlink_to(REPO / ".venv")
    process, template = mlflow_template
    if process.wait(timeout=120) == 0:
        shutil.copyfile(template, root / "mlflow.db")
    jpegs = write_voc_archives(root)
    write_coco2014(root / "data/raw/coco2014")
    write_wider(root / "data/raw/wider")
    write_custom_csv(root / "data/raw/mydata")
    return root, jpegs


def test_the_walkthrough_from_the_archives_to_a_served_model_and_a_search(voc_project, tmp_path, capsys):
    root, jpegs = voc_project
    env = unactivated_env(MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    reader = Reader(root, tmp_path, env)
    try:
        outputs = reader.read(blocks(PAGE))
    finally:
        reader.close()
        with capsys.disabled():
            print("\n" + "\n".join(f"{seconds:6.1f} s  {what}" for what, seconds in reader.times))
    said = "\n".join(outputs.values())
    # the replaced image: the workspace has the new bytes, DVC's cache still the original ones
    replaced = root / "data/raw/voc2007/VOC2007/JPEGImages/000007.jpg"
    original = hashlib.md5(jpegs["000007"]).hexdigest()
    assert replaced.read_bytes() == jpegs["000005"]
    assert (root / ".dvc/cache/files/md5" / original[:2] / original[2:]).read_bytes() == jpegs["000007"]
    # the first run: metrics, the model registered under the dataset's name, served
    assert json.loads((root / "results/evaluate/metrics.json").read_text())["mAP"] > 0
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    champion = client.get_model_version_by_alias("csra-voc07", "champion")
    assert champion.description.startswith("voc07")
    [answer] = [json.loads(text) for text in outputs.values() if text.startswith('{"predictions"')]
    [scores] = answer["predictions"]
    assert list(scores)[:2] == ["aeroplane", "bicycle"] and len(scores) == 20
    # the recipe that needs ImageNet weights stopped before it opened a run; the small experiment ran
    assert "ImageNet" in said
    assert "train.lam" in said and "0.3" in said
    # the small search: two trials of the quick recipe in optuna.db
    study = optuna.load_study(study_name="voc-quick", storage=f"sqlite:///{root / 'optuna.db'}")
    assert len(study.trials) == 2 and all(t.state.is_finished() for t in study.trials)
