"""The README's commands, as written, in a shell where the project's environment is not active (the README says
where to activate it): the MLflow UI and serving the champion of a trained workspace, a VOC-size and a 500 kB
photo through the curl line, the Python client; a block the tests cannot run says why."""

from __future__ import annotations

import json
import re

import numpy as np
from docs_runner import Reader, blocks, unactivated_env
from helpers import REPO, ok
from PIL import Image

README = REPO / "README.md"


def test_every_command_block_runs_or_says_why_not():
    for block in blocks(README):
        if block.lang in ("bash", "python"):
            assert block.kind in ("run", "server", "skip"), block
            assert block.kind != "skip" or len(block.mark) > len("skip: ") + 10, block


def test_the_readme_serves_the_champion_as_written(workspace, tmp_path):
    ok("export")  # what make repro ends with: the model registered as csra-synthetic, champion
    demo = workspace / "data/prepared/synthetic/demo"
    Image.open(demo / "demo_00.jpg").save(demo / "demo_03.png")  # the tiny dataset has three demo photos
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (600, 800, 3), dtype=np.uint8)).save(big, quality=95)
    assert big.stat().st_size > 500_000
    (workspace / ".venv").symlink_to(REPO / ".venv")
    page = blocks(README)
    reader = Reader(workspace, tmp_path, unactivated_env(MLFLOW_DISABLE_TELEMETRY="true",
                                                         MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"))
    try:
        outputs = reader.read(page)
        [curl] = [b for b in page if "curl" in b.text]
        curl.text = re.sub(r"^PHOTO=.*$", f"PHOTO={big}", curl.text, flags=re.M)
        large = reader.run(curl)
    finally:
        reader.close()
    answers = [json.loads(text) for text in outputs.values() if text.startswith('{"predictions"')]
    [printed] = [text for text in outputs.values() if text.startswith("[{")]
    classes = (workspace / "data/prepared/classes.txt").read_text().split()
    assert len(answers) == 1 and list(answers[0]["predictions"][0]) == classes
    assert list(json.loads(large)["predictions"][0]) == classes
    assert printed.count("{") == 2  # the Python client's two photos
