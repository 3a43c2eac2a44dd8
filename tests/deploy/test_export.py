"""Exported forms match the eager model to 1e-4; `csra export` registers a model `mlflow models serve` answers."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

import mlflow
import pytest
import torch
from conftest import REPO, make_tiny_checkpoint
from helpers import run
from PIL import Image, ImageDraw

from csra.data.loading import load_image
from csra.deploy.export import (
    PARITY_TOLERANCE,
    PHOTO_SIZES,
    check_parity,
    eager_scores,
    max_difference,
    onnx_runner,
    parity_images,
)
from csra.deploy.scoring import ScoringModel
from csra.errors import CSRAError
from csra.model.checkpoints import load_model
from stages import tracking

SERVE_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(out dir, checkpoint, MLflow URI, output) of one `csra export` (torch.export, ONNX, MLflow registration)."""
    root = tmp_path_factory.mktemp("export")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    checkpoint = make_tiny_checkpoint(root / "train" / "model.pt")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with tracking.training_run("csra", {"train.lam": 0.1}, root / "train" / "run.json", "tiny"):
            pass
        code, output = run("export", "--checkpoint", str(checkpoint), "--out-dir", str(root / "export"), "--onnx",
                           "--registered-model", "tiny", "--params", str(REPO / "params.yaml"))
    assert code == 0, output
    return root / "export", checkpoint, uri, output


def test_scoring_model_is_the_eager_model_on_normalised_resized_images(tiny_checkpoint):
    model, _ = load_model(tiny_checkpoint)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)  # already img_size: the resize keeps them
    with torch.no_grad():
        expected = torch.sigmoid(model(images.float() / 255))  # ResNet mean 0, std 1
        assert torch.allclose(ScoringModel(model)(images), expected, atol=1e-6)


def test_torch_export_and_onnx_match_the_eager_pil_path_on_fresh_images(exported):
    out, checkpoint, uri, output = exported
    model, _ = load_model(checkpoint)
    eager = partial(eager_scores, model)  # PIL's resize itself, as evaluate and demo
    fresh = parity_images(32, seed=123)
    assert [tuple(b.shape) for b in fresh[:2]] == [(1, 3, 32, 32), (3, 3, 45, 59)]
    assert [tuple(b.shape[2:]) for b in fresh[2:]] == list(PHOTO_SIZES)  # photo-like JPEGs
    mlflow.set_tracking_uri(uri)
    served = mlflow.pytorch.load_model("models:/tiny/1")  # the torch.export program lives in the registered model
    assert max_difference(eager, served, fresh) <= 1e-6  # the same pixels as evaluate's: float noise only
    assert max_difference(eager, onnx_runner(out / "model.onnx"), fresh) <= 1e-6
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "mlflow_model.json", "model.onnx"]
    recorded = json.loads((out / "export.json").read_text())["parity"]["max_abs_difference"]
    assert set(recorded) == {"model.pt2", "model.onnx"} and max(recorded.values()) <= PARITY_TOLERANCE
    assert "model.onnx: max |score - eager score|" in output


def test_a_form_beyond_the_tolerance_is_refused():
    assert check_parity({"model.pt2": 0.0, "model.onnx": 9e-5}) == {"model.pt2": 0.0, "model.onnx": 9e-5}
    with pytest.raises(CSRAError, match=r"model.onnx: scores differ from the eager model by 2.00e-04 > 0.0001"):
        check_parity({"model.pt2": 0.0, "model.onnx": 2e-4})


def test_export_json_states_the_input_contract_and_the_registered_version(exported):
    out = exported[0]
    contract = json.loads((out / "export.json").read_text())
    assert contract["input"]["dtype"] == "uint8" and contract["input"]["shape"] == ["batch", 3, "height", "width"]
    assert contract["preprocessing"]["resize"] == [32, 32] and contract["preprocessing"]["std"] == [1.0, 1.0, 1.0]
    assert contract["output"]["classes"] == ["circle", "square", "triangle"]
    registered = json.loads((out / "mlflow_model.json").read_text())
    assert registered == {"name": "tiny", "version": "1", "model_uri": "models:/tiny/1"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_json(url, payload):
    request = urllib.request.Request(url, json.dumps(payload).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def stop(server):
    """End the server and the uvicorn process it started: they share the session it was started in."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    server.wait(timeout=30)


def wait_for_ping(url, server, log):
    deadline = time.monotonic() + SERVE_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.poll() is None, f"mlflow models serve exited:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"no answer from {url} within {SERVE_TIMEOUT_S} s:\n{log.read_text()}")


def test_the_registered_model_served_by_mlflow_answers_with_the_eager_scores(exported, tmp_path):
    out, checkpoint, uri, _ = exported
    picture = tmp_path / "picture.png"
    image = Image.new("RGB", (48, 40), "grey")
    ImageDraw.Draw(image).ellipse((8, 6, 30, 28), fill="red")
    image.save(picture)
    pixels = load_image(picture)
    model_uri = json.loads((out / "mlflow_model.json").read_text())["model_uri"]
    port, log = free_port(), tmp_path / "serve.log"
    bin_dir = Path(sys.executable).parent
    command = [str(bin_dir / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
               "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as sink:
        server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for_ping(f"http://127.0.0.1:{port}/ping", server, log)
        answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": [pixels.tolist()]})
    finally:
        stop(server)
    model, _ = load_model(checkpoint)
    with torch.no_grad():
        expected = ScoringModel(model)(pixels.unsqueeze(0))[0]
    scores = torch.tensor(answer["predictions"][0])
    assert scores.shape == (3,) and torch.allclose(scores, expected, atol=PARITY_TOLERANCE)
