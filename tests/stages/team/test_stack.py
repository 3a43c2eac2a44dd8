"""The team's stack for real (conftest.py starts it): PostgreSQL behind the tracking server and its users, the
model's files in the S3 bucket through the server (the machines hold no bucket credentials), a second machine whose
run links to the first's training run, a third that loads the champion from the bucket, DVC's remote in the bucket
(push from one clone, pull into another: the same bytes), two machines running one study on the team's database,
and every bad set-up one `error:` line before any work."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import mlflow
import pytest
import torch
import yaml
from conftest import ALICE, BOB, PAGE, TEAM_BUCKET, page_reader, tiny_project
from docs_runner import blocks
from helpers import (
    BIN,
    GIT_ENV,
    REPO,
    assert_one_line_error,
    edit_params,
    free_port,
    new_project,
    post_json,
    run,
    start,
    stop,
    tiny_conf,
    training_run,
    wait_until_answers,
)
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from csra.data.loading import load_image
from csra.deploy.export import PARITY_TOLERANCE
from csra.deploy.scoring import ScoringModel
from csra.model.checkpoints import load_checkpoint_model
from stages.tracking import registry
from stages.tracking.lineage import dvc_md5

USER_VARIABLES = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
CHAMPION = "models:/csra-synthetic@champion"


def as_user(patch, user):
    for variable, value in zip(USER_VARIABLES, user):
        patch.setenv(variable, value)


@pytest.fixture(scope="module")
def first_machine(team_server, tmp_path_factory):
    """The first machine: a clone of the project (the tiny settings, machine load sampled every 0.5 s) whose `dvc
    repro` runs as docs/team.md's members' block says, as alice, with no bucket credentials: it records to the team
    server and registers csra-synthetic with the alias champion; its outputs are then committed. (folder, the
    training run)."""
    def shape(conf):
        tiny_conf(conf)
        edit_params(conf / "config.yaml", **{"tracking.system_metrics": 0.5})

    root = new_project(REPO, tmp_path_factory.mktemp("machine-1") / "project", shape)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    env.update(PATH=f"{BIN}{os.pathsep}{env['PATH']}", **team_server.env,
               **dict(zip(USER_VARIABLES, ALICE)))
    done = subprocess.run([str(BIN / "dvc"), "repro"], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    git("add", "-A", cwd=root)
    git("commit", "-qm", "pipeline outputs", cwd=root)
    with pytest.MonkeyPatch.context() as patch:
        for variable, value in team_server.env.items():
            patch.setenv(variable, value)
        as_user(patch, ALICE)
        mlflow.set_tracking_uri(team_server.url)
        return root, training_run(root / "results/train/best.pt")


@pytest.fixture
def member(team_server, monkeypatch):
    """This test talks to the server as alice; no bucket credentials anywhere in its environment."""
    for variable in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(variable, raising=False)
    for variable, value in team_server.env.items():
        monkeypatch.setenv(variable, value)
    as_user(monkeypatch, ALICE)
    mlflow.set_tracking_uri(team_server.url)
    return MlflowClient()


def test_the_runs_are_in_postgresql_and_their_files_in_the_bucket(first_machine, member, team_server, postgres, s3):
    import psycopg

    root, trained = first_machine
    with psycopg.connect(postgres.url("mlflow", "mlflow", "mlflow-db-password")) as db:  # docs/team.md's
        names = [name for (name,) in db.execute("SELECT name FROM runs ORDER BY start_time")]
    assert trained.info.run_name in names
    listed = s3.client().list_objects_v2(Bucket=TEAM_BUCKET, Prefix="mlartifacts/")
    keys = [item["Key"] for item in listed.get("Contents", [])]
    run_prefix = f"mlartifacts/{trained.info.experiment_id}/{trained.info.run_id}/artifacts/"
    assert any(k.startswith(run_prefix) and k.endswith("metrics.json") for k in keys), keys
    assert any(k.endswith("model.pt2") for k in keys), keys
    champion = member.get_model_version_by_alias("csra-synthetic", "champion")
    assert champion.version == "1" and champion.run_id == trained.info.run_id
    # the UI's artifact pages: a plot of the training and a heatmap of the demo, as the UI fetches them, streamed
    # by the server from the bucket
    [plot] = [k for k in keys if k.startswith(run_prefix) and k.endswith("pr_curves.png")]
    heatmaps = [k for k in keys if "/artifacts/demo/heatmaps/" in k and k.endswith(".png")]
    assert heatmaps, keys
    token = base64.b64encode(":".join(ALICE).encode()).decode()
    for key in (plot, heatmaps[0]):
        _, _, run_id, _, path = key.split("/", 4)  # mlartifacts/<experiment>/<run>/artifacts/<path>
        page = urllib.request.Request(f"{member.tracking_uri}/get-artifact?path={path}&run_uuid={run_id}",
                                      headers={"Authorization": f"Basic {token}"})
        with urllib.request.urlopen(page, timeout=30, context=team_server.context()) as answer:
            assert answer.read() == s3.client().get_object(Bucket=TEAM_BUCKET, Key=key)["Body"].read()
    print(f"\nruns: {names}\nartifact URI of {trained.info.run_name}: {trained.info.artifact_uri} = "
          f"s3://{TEAM_BUCKET}/{run_prefix}\nchampion: {champion.source}, {len(keys)} objects in "
          f"s3://{TEAM_BUCKET}/mlartifacts")


def test_a_second_machine_links_its_run_to_the_first_machines_training(first_machine, member, tmp_path,
                                                                        monkeypatch):
    root, trained = first_machine
    second = tiny_project(tmp_path / "machine-2")
    for folder in ("data/prepared", "results/train"):  # what `dvc pull` brings (test_dvc_remote_in_the_bucket)
        shutil.copytree(root / folder, second / folder)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}  # another machine: another process
    done = subprocess.run([sys.executable, "-m", "stages.cli", "evaluate", "--threshold", "0.3"], cwd=second, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = member.search_runs([trained.info.experiment_id], f"tags.`csra.train_run_id` = '{trained.info.run_id}'")
    [linked] = found
    assert linked.data.tags["mlflow.parentRunId"] == trained.info.run_id and "mAP" in linked.data.metrics


def test_the_run_has_its_data_machine_load_and_registration(first_machine, member):
    root, trained = first_machine
    found = member.get_run(trained.info.run_id)
    commit = subprocess.run(["git", "rev-parse", "HEAD~1"], cwd=root, capture_output=True, text=True).stdout
    assert found.info.run_name == f"synthetic-resnet18-{commit[:7]}"  # dataset (= recipe), backbone, the commit run
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
    # export joined the execution's run, registered version 1 and gave it the alias champion
    recorded = mlflow.artifacts.load_dict(f"runs:/{trained.info.run_id}/export/registration.json")
    assert recorded["version"] == "1" and recorded["champion"] == "1" and recorded["registered"] == "registered"
    champion = member.get_model_version_by_alias("csra-synthetic", "champion")
    metrics = json.loads((root / "results/evaluate/metrics.json").read_text())
    assert registry.version_metric(champion, "mAP") == pytest.approx(metrics["mAP"], abs=1e-4)
    assert champion.tags["dataset.digest"] == dvc_md5(root / "data/prepared")


def test_a_third_machine_serves_the_champion_from_the_bucket_with_the_same_scores(first_machine, member, tmp_path):
    """`mlflow models serve -m models:/csra-synthetic@champion` in a folder of its own, as a member with no bucket
    credentials: the server hands it the model's files from the bucket, and it answers a photo with the eager
    scores."""
    root, _ = first_machine
    pixels = load_image(sorted((root / "data/prepared/synthetic/demo").iterdir())[0])
    port, log = free_port(), tmp_path / "serve.log"
    served = start([str(BIN / "mlflow"), "models", "serve", "-m", CHAMPION, "--env-manager", "local", "--host",
                    "127.0.0.1", "--port", str(port)], log, cwd=tmp_path)
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
    print(f"\nserved answer: {answer['predictions'][0]}")


def test_demo_and_export_take_the_champion(first_machine, member, tmp_path, monkeypatch):
    monkeypatch.chdir(first_machine[0])
    code, output = run("demo", "--model-uri", CHAMPION, "--out-dir", str(tmp_path / "served"))
    assert code == 0 and f"heatmaps: none: {CHAMPION} is the served model" in output, output
    code, output = run("demo", "--out-dir", str(tmp_path / "eager"))
    assert code == 0, output
    served, eager = (json.loads((tmp_path / name / "predictions.json").read_text()) for name in ("served", "eager"))
    assert [p["image"] for p in served] == [p["image"] for p in eager]
    assert all(abs(s["scores"][c] - e["scores"][c]) <= PARITY_TOLERANCE for s, e in zip(served, eager)
               for c in e["scores"])
    assert not (tmp_path / "served/heatmaps").exists() and (tmp_path / "eager/heatmaps").is_dir()
    code, output = run("export", "--model-uri", CHAMPION, "--out-dir", str(tmp_path / "export"))
    assert code == 0, output
    contract = json.loads((tmp_path / "export/export.json").read_text())
    assert contract["source"] == "models:/csra-synthetic/1" and len(contract["output"]["classes"]) == 10


def test_a_client_without_credentials_is_refused(first_machine, member, team_server, monkeypatch, tmp_path):
    root, url = first_machine[0], member.tracking_uri
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=1", timeout=30,
                               context=team_server.context())
    assert answer.value.code == 401
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.mlflow/credentials either
    for variable in USER_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    began = time.monotonic()
    code, output = run("demo", "--model-uri", CHAMPION, "--out-dir", str(tmp_path / "demo"))
    assert_one_line_error(code, output, f"the MLflow server at {url} refused the request (401 unauthenticated): "
                                        "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD")
    assert time.monotonic() - began < 10, "a refusal is final: MLflow's client must not retry it"
    as_user(monkeypatch, (ALICE[0], "not-the-password"))
    code, output = run("demo", "--model-uri", CHAMPION, "--out-dir", str(tmp_path / "demo"))
    assert_one_line_error(code, output, "refused user 'alice' (401 unauthenticated): check MLFLOW_TRACKING_USERNAME")


def test_a_member_who_does_not_trust_the_servers_ca_is_one_line(first_machine, team_server, tmp_path):
    """Caddy signs with its own CA (`tls internal`): a member's machine without MLFLOW_TRACKING_SERVER_CERT_PATH
    gets one line naming it, before any work."""
    root = first_machine[0]
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    os.symlink(root / "data", tmp_path / "data")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_SERVER_CERT_PATH"}
    env.update(MLFLOW_TRACKING_URI=team_server.url, **dict(zip(USER_VARIABLES, ALICE)))
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "stages.cli", "train"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    print("\n" + done.stderr.strip().splitlines()[-1])
    assert_one_line_error(done.returncode, done.stdout + done.stderr,
                          f"the MLflow server at {team_server.url} shows a certificate this machine does not trust "
                          "(unable to get local issuer certificate): set MLFLOW_TRACKING_SERVER_CERT_PATH to the "
                          "certificate of the CA that signed it")
    assert time.monotonic() - began < 15 and not (tmp_path / "results").exists()


def test_a_reader_cannot_register_a_version_nor_move_the_champion(first_machine, member, monkeypatch, tmp_path):
    """bob holds the page's default permission, READ: he reads the champion, and may neither register a version,
    move the alias, nor log a run."""
    root, url = first_machine[0], member.tracking_uri
    as_user(monkeypatch, BOB)
    reader = MlflowClient()
    champion = reader.get_model_version_by_alias("csra-synthetic", "champion")  # reading is allowed
    refused = [lambda: reader.create_model_version("csra-synthetic", champion.source, champion.run_id),
               lambda: reader.set_registered_model_alias("csra-synthetic", "champion", "2")]
    for call in refused:
        with pytest.raises(MlflowException) as error:
            call()
        assert error.value.error_code == "PERMISSION_DENIED" and error.value.get_http_status_code() == 403
    as_user(monkeypatch, ALICE)
    assert [v.version for v in MlflowClient().search_model_versions("name = 'csra-synthetic'")] == ["1"]
    assert MlflowClient().get_model_version_by_alias("csra-synthetic", "champion").version == "1"
    # a stage run by the reader: train gets as far as opening its run
    (tmp_path / "params.yaml").write_text((root / "params.yaml").read_text())
    os.symlink(root / "data", tmp_path / "data")
    monkeypatch.chdir(tmp_path)
    as_user(monkeypatch, BOB)
    code, output = run("train")
    assert_one_line_error(code, output, f"the MLflow server at {url} refused user 'bob' (403 permission denied): "
                                        "the user may not log runs to the experiment 'csra'")


def git(*args, cwd):
    subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, check=True, capture_output=True,
                   env={**os.environ, **GIT_ENV})


def test_dvc_remote_in_the_bucket_gives_the_same_bytes_to_another_clone(first_machine, team_server, postgres, s3,
                                                                        tmp_path):
    """docs/team.md's DVC blocks as written: the remote added in the first machine's clone and pushed (the data and
    the checkpoints its dvc.lock names), pulled into another clone."""
    first, _ = first_machine
    reader = page_reader(first, tmp_path, postgres, s3)
    (tmp_path / "logs").mkdir()
    page = blocks(PAGE)
    [push] = [b for b in page if "dvc push" in b.text]
    [pull] = [b for b in page if "dvc pull" in b.text]
    activate = next(b for b in page if b.text.strip() == ". .venv/bin/activate")
    reader.run(activate)
    began = time.monotonic()
    pushed = reader.run(push)
    push_s = time.monotonic() - began
    secret = s3.env["AWS_SECRET_ACCESS_KEY"]  # committed: the remote; in config.local only: its credentials
    assert secret not in (first / ".dvc/config").read_text() and secret in (first / ".dvc/config.local").read_text()
    git("ls-files", "--error-unmatch", ".dvc/config", cwd=first)
    second = tmp_path / "clone-2"
    git("clone", "-q", str(first), str(second), cwd=tmp_path)
    reader = page_reader(second, tmp_path, postgres, s3)
    reader.run(activate)
    began = time.monotonic()
    pulled = reader.run(pull)
    pull_s = time.monotonic() - began
    files = [p.relative_to(first) for folder in ("data/prepared", "results") for p in (first / folder).rglob("*")
             if p.is_file()]
    assert Path("results/train/best.pt") in files and Path("data/prepared/test_voc07.json") in files
    assert all((second / f).read_bytes() == (first / f).read_bytes() for f in files)
    assert "Cache and remote 'team' are in sync." in pulled, pulled
    size = sum((first / f).stat().st_size for f in files)
    print(f"\ndvc push {push_s:.1f} s, dvc pull {pull_s:.1f} s (each with its remote lines): {len(files)} files, "
          f"{size / 1e6:.1f} MB\n{pushed.strip()}\n{pulled.strip()}")


# --- a study on the team's database -----------------------------------------------------------------------------

def search_worker(root: Path, storage: str, env: dict, *options: str) -> subprocess.Popen:
    """`csra search` of the study team in root, a machine of its own (a process group: the machine dies whole)."""
    return subprocess.Popen([sys.executable, "-m", "stages.cli", "search", "--study", "team", "--space", "team",
                             "--storage", storage, "--trials", "1", *options], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def test_two_machines_run_one_study_on_postgresql_and_one_server(team_server, postgres, prepared, tmp_path):
    """Two machines (folders of their own) run trials of one study on docs/team.md's `optuna` database, tracking to
    the server as alice. The first dies mid-trial (its whole process group killed); the second goes on, ends, leaves
    the study's run open for the dead trial and the promotion to the last invocation; the first machine, back, finds
    the dead trial's heartbeat stale past --grace, marks it failed (in Optuna and MLflow) and runs the next point."""
    from helpers import compose

    storage = postgres.url("optuna", "mlflow", "mlflow-db-password")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MLFLOW_S3"))}
    env.update(**team_server.env, **dict(zip(USER_VARIABLES, ALICE)))
    machines = []
    for name in ("machine-a", "machine-b"):
        root = tmp_path / name
        shutil.copytree(REPO / "conf", root / "conf")
        tiny_conf(root / "conf")
        grid = {"sampler": {"name": "grid", "seed": 0}, "pruner": {"name": "none"},
                "params": {"train.epochs": {"choices": [3]}, "train.lam": {"choices": [0.1, 0.2, 0.3]}}}
        (root / "conf/search/team.yaml").write_text(yaml.safe_dump(grid))
        compose(root)
        (root / "data").symlink_to(prepared)
        machines.append(root)
    dying = search_worker(machines[0], storage, env, "--no-promote")
    lines = []
    for line in dying.stdout:  # the dying machine's trial has ended its first epoch
        lines.append(line)
        if re.match(r"trial 0: epoch\s+1/3", line):
            break
    else:
        pytest.fail("".join(lines))
    going_on = search_worker(machines[1], storage, env)  # promotes unless another worker's trial runs
    os.killpg(dying.pid, signal.SIGKILL)
    dying.wait()
    killed_at = time.monotonic()
    second = going_on.communicate(timeout=300)[0]
    assert going_on.returncode == 0, second
    import optuna

    trials = optuna.load_study(study_name="team", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["RUNNING", "COMPLETE"], second
    assert "study team: its MLflow run stays open (RUNNING) for trial 0 of other workers" in second
    assert "the best trial is promoted by the last invocation to end (trial 0 of other workers still run)" in second
    time.sleep(max(0.0, killed_at + 3 - time.monotonic()))
    back = search_worker(machines[0], storage, env, "--no-promote", "--grace", "3")  # stale after 3 s of silence
    third = back.communicate(timeout=300)[0]
    assert back.returncode == 0, third
    assert "warning: trial 0 of " in third and "stopped beating (its worker died): marked failed" in third, third
    trials = optuna.load_study(study_name="team", storage=storage).get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert sorted(t.params["train.lam"] for t in trials) == [0.1, 0.2, 0.3]  # no point twice
    assert [t.user_attrs["pid"] for t in trials] == [dying.pid, going_on.pid, back.pid]
    client = MlflowClient(team_server.url)
    with pytest.MonkeyPatch.context() as patch:
        as_user(patch, ALICE)
        patch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", team_server.cert)
        [parent] = client.search_runs([client.get_experiment_by_name("csra").experiment_id],
                                      "attributes.run_name = 'study team'")
        nested = client.search_runs([parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        runs = {r.data.tags["optuna.trial"]: r for r in nested}
        # the dead trial's epoch 1, kept on its machine and sent when that machine's next invocation opened the store
        history = client.get_metric_history(runs["0"].info.run_id, "val_mAP")
    assert {n: r.info.status for n, r in runs.items()} == {"0": "FAILED", "1": "FINISHED", "2": "FINISHED"}
    assert [m.step for m in history] == [1]
    assert (parent.info.status, parent.data.tags["running_trials"]) == ("FINISHED", "")
    said = [line for line in (second + third).splitlines() if "promoted by" in line or "beating" in line
            or "stays open" in line]
    print("\n" + "\n".join(said + [f"trial {t.number}: {t.state.name}, lam {t.params['train.lam']}, pid "
                                     f"{t.user_attrs['pid']}, run {t.user_attrs['mlflow_run_id']}" for t in trials]))
