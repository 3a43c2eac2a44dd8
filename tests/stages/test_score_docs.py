"""docs/scoring.md as a reader runs it, in a trained workspace whose model is registered (the champion): `csra score`
of the built-in demo photos, the Parquet read back with pandas; and the Spark example, where pyspark and Java are
installed (the `spark` extra, which `make install` leaves out: it is skipped, saying so, elsewhere). The commands
that start Ray run in a loopback-only network namespace (Ray looks for an outside address otherwise); Spark, which
starts no Ray, outside one (its Java gateway did not answer inside one)."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from docs_runner import Reader, blocks, unactivated_env
from helpers import REPO, ok

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


def test_the_page_scores_the_demo_photos_and_spark_gives_the_same_scores(reader, workspace):
    page = blocks(PAGE)
    outputs = reader.read(page)
    classes = (workspace / "data/prepared/classes.txt").read_text().split()
    demo = sorted((workspace / "data/prepared/synthetic/demo").iterdir())
    said = "\n".join(outputs.values())
    assert f"scored {len(demo)} photos" in said and "errors: none" in said
    rows = pq.read_table(workspace / "scores").to_pylist()
    assert sorted(row["path"] for row in rows) == [f"data/prepared/synthetic/demo/{p.name}" for p in demo]
    assert list(rows[0]) == ["path", *classes, "labels", "error"]
    assert f"path {' '.join(classes[:3])}" in " ".join(said.split())  # pandas printed the table
    if importlib.util.find_spec("pyspark") is None or shutil.which("java") is None:
        pytest.skip("the Spark example needs pyspark (pip install -c constraints.txt -e '.[spark]') and Java")
    [spark] = [b for b in page if "spark_udf" in b.text]
    Reader(workspace, reader.logs, reader.plain_env, reader.prelude).run(replace(spark, mark=""))
    spark_rows = {Path(row["path"].removeprefix("file:")).name: row
                  for row in pq.read_table(workspace / "scores-spark").to_pylist()}
    assert len(spark_rows) == len(demo)
    for row in rows:
        other = spark_rows[Path(row["path"]).name]
        assert np.allclose([row[c] for c in classes], [other[c] for c in classes], atol=1e-5)
