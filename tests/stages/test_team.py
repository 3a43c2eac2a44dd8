"""Team mode: every stage tracks to an `mlflow server` (SQLite backend, proxied artifacts, MLflow's basic-auth app)
on a loopback port, over HTTP, as the user in MLFLOW_TRACKING_USERNAME/PASSWORD. Train, evaluate and export record
one run with its data and machine load, register the model and give it the alias champion, which `mlflow models
serve`, demo and export then take as models:/csra-synthetic@champion. The server refuses a client without
credentials, and a user who may only read cannot register a version nor move the champion."""

import json
import os
import time
import urllib.error
import urllib.request

import mlflow
import pytest
import torch
import yaml
from helpers import (
    BIN,
    TINY,
    assert_one_line_error,
    free_port,
    merge,
    new_store,
    post_json,
    repo_params,
    run,
    start,
    stop,
    training_run,
    wait_until_answers,
)
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client

from csra.data.loading import load_image
from csra.deploy.export import PARITY_TOLERANCE
from csra.deploy.scoring import ScoringModel
from csra.model.checkpoints import load_checkpoint_model
from stages.tracking import registry
from stages.tracking.lineage import dvc_md5

ADMIN, TRAINER, READER = ("admin", "admin-password-1"), ("trainer", "trainer-password"), ("reader", "reader-password")
USER_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def as_user(patch, user):
    """Make MLflow's client (in this process and the servers it starts) send user's credentials."""
    for variable, value in zip(USER_VARIABLES, user):
        patch.setenv(variable, value)


@pytest.fixture(scope="module")
def server(tmp_path_factory, mlflow_template):
    """(URL, artifact folder) of `mlflow server --app-name basic-auth` with a SQLite database and proxied artifacts
    (docs/mlflow.md), its users in a database of its own: the admin, TRAINER and READER."""
    root = tmp_path_factory.mktemp("server")
    port, log, config = free_port(), root / "server.log", root / "basic_auth.ini"
    config.write_text(f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
                      f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
                      "auth_cache_ttl_seconds = 600\n")  # a password is checked once, not at each of many requests
    process = start([str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
                     "--backend-store-uri", new_store(root, mlflow_template),
                     "--artifacts-destination", str(root / "artifacts"), "--serve-artifacts",
                     "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], log,
                    MLFLOW_AUTH_CONFIG_PATH=str(config), MLFLOW_FLASK_SERVER_SECRET_KEY="csrf-key-of-the-test")
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_answers(f"{url}/health", process, log)
        with pytest.MonkeyPatch.context() as patch:
            as_user(patch, ADMIN)
            users = get_app_client("basic-auth", tracking_uri=url)
            for name, password in (TRAINER, READER):
                users.create_user(name, password)
        yield url, root / "artifacts"
    finally:
        stop(process)


@pytest.fixture(scope="module")
def team(server, tmp_path_factory):
    """The chain prepare → train → evaluate → export, tracking to the server: (folder, server URL, artifacts)."""
    url, artifacts = server
    root = tmp_path_factory.mktemp("team")
    params = merge(repo_params(), TINY)
    params["tracking"]["system_metrics"] = 0.5  # a tiny training lasts seconds
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        patch.setenv("MLFLOW_TRACKING_URI", url)
        as_user(patch, TRAINER)
        for stage in ("prepare", "train", "evaluate", "export"):
            code, output = run(stage)
            assert code == 0, output
    return root, url, artifacts


@pytest.fixture
def client(team, monkeypatch):
    monkeypatch.chdir(team[0])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", team[1])
    as_user(monkeypatch, TRAINER)
    mlflow.set_tracking_uri(team[1])
    return MlflowClient()


def test_the_run_on_the_server_has_its_data_machine_load_and_artifacts(team, client):
    root, _, artifacts = team
    found = training_run(root / "results/train/best.pt")
    assert found.info.run_name == "synthetic-resnet18"  # dataset (= recipe), backbone (no git commit in this folder)
    inputs = {i.tags[0].value: i.dataset for i in found.inputs.dataset_inputs}
    assert set(inputs) == {"training", "evaluation"} and inputs["training"].digest == dvc_md5(root / "data/prepared")
    scored = inputs["evaluation"]  # the test file of the same prepared folder, under its own name
    assert scored.name == "synthetic: test_voc07.json" and scored.digest == inputs["training"].digest
    files = ("trainval_voc07.json", "val_voc07.json", "test_voc07.json")
    counts = {name: len(json.loads((root / "data/prepared" / name).read_text())) for name in files}
    assert json.loads(inputs["training"].profile) == counts and all(counts.values())
    assert inputs["training"].name == "synthetic" and "data/prepared" in inputs["training"].source
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= set(found.data.metrics)
    assert found.data.tags["test.file"] == "data/prepared/test_voc07.json"
    assert any(artifacts.rglob("metrics.json")) and any(artifacts.rglob("model.pt2"))  # proxied to the server


def test_the_model_is_registered_with_the_alias_champion(team, client):
    run_id = training_run(team[0] / "results/train/best.pt").info.run_id  # export joined its execution's run
    recorded = mlflow.artifacts.load_dict(f"runs:/{run_id}/export/registration.json")
    assert recorded["version"] == "1" and recorded["champion"] == "1" and recorded["registered"] == "registered"
    champion = client.get_model_version_by_alias("csra-synthetic", "champion")
    metrics = json.loads((team[0] / "results/evaluate/metrics.json").read_text())
    assert registry.version_metric(champion, "mAP") == pytest.approx(metrics["mAP"], abs=1e-4)
    assert champion.tags["dataset.digest"] == dvc_md5(team[0] / "data/prepared")


def test_the_served_champion_answers_with_the_eager_scores(team, tmp_path):
    root, url, _ = team
    pixels = load_image(sorted((root / "data/prepared/synthetic/demo").iterdir())[0])
    port, log = free_port(), tmp_path / "serve.log"
    served = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/csra-synthetic@champion", "--env-manager",
                    "local", "--host", "127.0.0.1", "--port", str(port)], log, MLFLOW_TRACKING_URI=url,
                   **dict(zip(USER_VARIABLES, TRAINER)))
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", served, log)
        answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": [pixels.tolist()]})
    finally:
        stop(served)
    model, saved = load_checkpoint_model(root / "results/train/best.pt")
    with torch.no_grad():
        expected = ScoringModel(model)(pixels.unsqueeze(0))[0]
    assert list(answer["predictions"][0]) == saved["classes"]  # {class: score}, in the model's class order
    scores = torch.tensor(list(answer["predictions"][0].values()))
    assert scores.shape == (10,) and torch.allclose(scores, expected, atol=PARITY_TOLERANCE)


def test_demo_and_export_take_the_champion(team, client, tmp_path):
    code, output = run("demo", "--model-uri", "models:/csra-synthetic@champion", "--out-dir", str(tmp_path / "served"))
    assert code == 0 and "heatmaps: none: models:/csra-synthetic@champion is the served model" in output, output
    code, output = run("demo", "--out-dir", str(tmp_path / "eager"))
    assert code == 0, output
    served, eager = (json.loads((tmp_path / name / "predictions.json").read_text()) for name in ("served", "eager"))
    assert [p["image"] for p in served] == [p["image"] for p in eager]
    assert all(abs(s["scores"][c] - e["scores"][c]) <= PARITY_TOLERANCE for s, e in zip(served, eager)
               for c in e["scores"])
    assert not (tmp_path / "served/heatmaps").exists() and (tmp_path / "eager/heatmaps").is_dir()
    code, output = run("export", "--model-uri", "models:/csra-synthetic@champion", "--out-dir",
                       str(tmp_path / "export"))
    assert code == 0, output
    contract = json.loads((tmp_path / "export/export.json").read_text())
    assert contract["source"] == "models:/csra-synthetic/1" and len(contract["output"]["classes"]) == 10


def test_a_client_without_credentials_is_refused(team, monkeypatch, tmp_path):
    root, url, _ = team
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30)
    assert answer.value.code == 401
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials either
    for variable in USER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    began = time.monotonic()
    code, output = run("demo", "--model-uri", "models:/csra-synthetic@champion", "--out-dir", str(tmp_path / "demo"))
    assert_one_line_error(code, output, f"the MLflow server at {url} refused the request (401 unauthenticated): "
                                        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    assert time.monotonic() - began < 10, "a refusal is final: MLflow's client must not retry it"
    as_user(monkeypatch, (TRAINER[0], "not-the-password"))
    code, output = run("demo", "--model-uri", "models:/csra-synthetic@champion", "--out-dir", str(tmp_path / "demo"))
    assert_one_line_error(code, output, "refused user 'trainer' (401 unauthenticated): check MLFLOW_TRACKING_USERNAME")


def test_a_reader_cannot_register_a_version_nor_move_the_champion(team, monkeypatch, tmp_path):
    root, url, _ = team
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    mlflow.set_tracking_uri(url)
    as_user(monkeypatch, ADMIN)  # READ on the experiment and the model, as docs/mlflow.md grants it
    experiment = MlflowClient().get_experiment_by_name("csra").experiment_id
    users = get_app_client("basic-auth", tracking_uri=url)
    users.grant_user_permission(READER[0], "experiment", experiment, "READ")
    users.grant_user_permission(READER[0], "registered_model", "csra-synthetic", "READ")
    as_user(monkeypatch, READER)
    reader = MlflowClient()
    champion = reader.get_model_version_by_alias("csra-synthetic", "champion")  # reading is allowed
    refused = [lambda: reader.create_model_version("csra-synthetic", champion.source, champion.run_id),
               lambda: reader.set_registered_model_alias("csra-synthetic", "champion", "2")]
    for call in refused:
        with pytest.raises(MlflowException) as error:
            call()
        assert error.value.error_code == "PERMISSION_DENIED" and error.value.get_http_status_code() == 403
    as_user(monkeypatch, TRAINER)
    assert [v.version for v in MlflowClient().search_model_versions("name = 'csra-synthetic'")] == ["1"]
    assert MlflowClient().get_model_version_by_alias("csra-synthetic", "champion").version == "1"
    # a stage run by the reader: train gets as far as opening its run
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    os.symlink(root / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    as_user(monkeypatch, READER)
    code, output = run("train")
    assert_one_line_error(code, output, f"the MLflow server at {url} refused user 'reader' (403 permission denied): "
                                        "the user may not log runs to the experiment 'csra'")
