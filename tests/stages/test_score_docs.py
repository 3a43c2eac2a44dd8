"""docs/scoring.md as a reader runs it, in a trained workspace whose model is registered (the champion): `csra score`
of the built-in demo photos on a local Ray — with photos in a subfolder and bad ones among them, here — its scores
those of `csra demo`, a row with an error for each bad photo, its MLflow run, no Ray process left; the Parquet read
back with pandas; and the Spark example, where pyspark and Java are
installed (the `spark` extra, which `make install` leaves out: it is skipped, saying so, elsewhere). The commands
that start Ray run in a loopback-only network namespace (Ray looks for an outside address otherwise); Spark, which
starts no Ray, outside one (its Java gateway did not answer inside one)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pyarrow.parquet as pq
import pytest
from docs_runner import Reader, blocks, unactivated_env
from helpers import REPO, ok
from photos import ray_processes, write_bad_photos, write_photos
from PIL import Image

PAGE = REPO / "docs" / "scoring.md"
SHIM = """#!/bin/sh
exec unshare -n sh -c 'ip link set lo up && exec /bin/bash "$@"' bash "$@"
"""


def test_every_command_block_runs_or_says_why_not():
    for block in blocks(PAGE):
        if block.lang in ("bash", "python"):
            assert block.kind in ("run", "skip"), block
            assert block.kind != "skip" or "tests/stages/test_score" in block.mark, block


@pytest.fixture
def reader(workspace, tmp_path):
    """A reader of the page in the workspace, its model registered, every command in a network namespace of its
    own; Ray's folder a short one under /tmp, removed after."""
    ok("export")  # what make repro ends with: csra-synthetic, its champion
    (workspace / ".venv").symlink_to(REPO / ".venv")
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "bash").write_text(SHIM)
    (shims / "bash").chmod(0o755)
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    env = unactivated_env(MLFLOW_DISABLE_TELEMETRY="true", RAY_AUTH_MODE="disabled", RAY_TMPDIR=str(ray_tmp),
                          SPARK_LOCAL_IP="127.0.0.1")
    env["PATH"] = f"{shims}:{env['PATH']}"
    found = Reader(workspace, tmp_path, env)
    found.plain_env = {**env, "PATH": env["PATH"].split(":", 1)[1]}  # Spark's programs (no Ray) outside one
    yield found
    found.close()
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_the_page_scores_the_demo_photos_and_spark_gives_the_same_scores(reader, workspace, tmp_path):
    folder = workspace / "data/prepared/synthetic/demo"
    demo = sorted(folder.iterdir())
    more = write_photos(folder / "more", 5)
    bad = write_bad_photos(folder / "more", more[0], 40_000_000)
    Image.new("1", (8000, 6000)).save(folder / "more" / "too_large.png")  # over export.max_pixels, 40 megapixels
    bad["too_large.png"] = "over the limit of 40,000,000"
    page = blocks(PAGE)
    outputs = reader.read(page)
    classes = (workspace / "data/prepared/classes.txt").read_text().split()
    [said] = [text for text in outputs.values() if text.startswith("scored ")]
    lines = said.splitlines()  # the summary alone: Ray's own lines stay in its logs
    assert len(lines) == 3 and f"scored {len(demo) + 8} photos" in lines[0] and "local Ray" in lines[0], said
    assert lines[1] == "errors: 3 photos unreadable (their rows have an error and no scores)", said
    assert ray_processes(Path(reader.env["RAY_TMPDIR"])) == []
    rows = {row["path"]: row for row in pq.read_table(workspace / "scores").to_pylist()}
    assert sorted(rows) == sorted(str(p.relative_to(workspace)) for p in folder.rglob("*") if p.is_file())
    assert list(next(iter(rows.values()))) == ["path", *classes, "labels", "error"]
    for name, needle in bad.items():
        row = rows[f"data/prepared/synthetic/demo/more/{name}"]
        assert needle in row["error"] and row["labels"] is None and all(row[c] is None for c in classes), row
    # csra demo's scores and labels (at the model's tuned thresholds, as score's default), on the same files
    for images, out in ((folder / "more", "demo"), (folder, "demo2")):
        ok("demo", "--model-uri", "models:/csra-synthetic@champion", "--images", images, "--thresholds", "per_class",
           "--out-dir", tmp_path / out)
    scored = [*json.loads((tmp_path / "demo/predictions.json").read_text()),
              *json.loads((tmp_path / "demo2/predictions.json").read_text())]
    assert len(scored) == len(demo) + len(more)  # demo leaves out the bad photos
    for item in scored:
        row = rows[str(Path(item["image"]).relative_to(workspace))]
        if row["error"] is None:
            assert np.allclose([row[c] for c in classes], [item["scores"][c] for c in classes], atol=1e-5)
            assert row["labels"] == item["labels"]
    # the job's MLflow run
    [run] = mlflow.search_runs(search_all_experiments=True, filter_string="attributes.run_name LIKE 'score%'",
                               output_format="list")
    assert run.info.status == "FINISHED" and run.data.params["photos"] == "data/prepared/synthetic/demo"
    assert run.data.params["photos.count"] == str(len(rows)) and run.data.metrics["errors"] == 3
    assert run.data.metrics["photos_per_s"] > 0 and run.data.tags["csra.model_uri"] == "models:/csra-synthetic@champion"
    assert run.data.tags["csra.model_version"] == "models:/csra-synthetic/1"
    assert run.data.tags["csra.output"] == str(workspace / "scores")
    assert f"path {' '.join(classes[:3])}" in " ".join("".join(outputs.values()).split())  # pandas printed the table
    for name in bad:
        (folder / "more" / name).unlink()  # the Spark example: a photo the model refuses fails its task
    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        pytest.skip("the Spark example needs pyspark (pip install -c constraints.txt -e '.[spark]') and Java")
    [spark] = [b for b in page if "spark_udf" in b.text]
    Reader(workspace, reader.logs, reader.plain_env, reader.prelude).run(replace(spark, mark=""))
    spark_rows = {Path(row["path"].removeprefix("file:")).name: row
                  for row in pq.read_table(workspace / "scores-spark").to_pylist()}
    assert len(spark_rows) == len(demo) + len(more)
    for row in rows.values():
        if row["error"] is not None:
            continue
        other = spark_rows[Path(row["path"]).name]
        assert np.allclose([row[c] for c in classes], [other[c] for c in classes], atol=1e-5)
