"""The whole chain on a tiny built-in dataset through the CLI: files written and the one MLflow run. The chain is
conftest's session-wide `trained_workspace`; tests that run a command do so in their own copy (`workspace`)."""

import csv
import hashlib
import json
import re
from pathlib import Path

import mlflow
import pytest
from helpers import CHAIN, new_store, ok, run, run_chain, training_run
from mlflow.tracking import MlflowClient
from PIL import Image

from stages.tracking import runs as recorded
from stages.tracking.execution import EXECUTION


def test_chain_writes_every_output(trained_workspace):
    root, outputs = trained_workspace.root, trained_workspace.outputs
    prepared = root / "data" / "prepared"
    test_items = json.loads((prepared / "test_voc07.json").read_text())
    assert len(json.loads((prepared / "trainval_voc07.json").read_text())) == 24 and len(test_items) == 16
    assert all((root / item["img_path"]).is_file() for item in test_items)  # relative to the workspace

    history = list(csv.DictReader((root / "results/train/history.csv").open()))
    assert [row["epoch"] for row in history] == ["1", "2"]
    assert [row for row in history[0]] == ["epoch", "train_loss", "lr", "val_mAP", "best_epoch"]  # no timings
    assert sorted(p.name for p in (root / "results/train").iterdir()) == [
        "best.pt", "history.csv", "metrics.json"]  # one checkpoint, no MLflow run id

    metrics = json.loads((root / "results/evaluate/metrics.json").read_text())
    six = ["CP", "CR", "CF1", "OP", "OR", "OF1"]
    assert set(metrics) == {"mAP", *six, *(f"{k}_top3" for k in six)}
    assert all(0 <= v <= 100 for v in metrics.values())
    scores = json.loads((root / "results/evaluate/scores.json").read_text())
    assert [s["file_name"] for s in scores] == [Path(i["img_path"]).stem for i in test_items]
    assert all(len(s["scores"]) == 10 and all(0 <= x <= 1 for x in s["scores"]) for s in scores)
    assert f"mAP {metrics['mAP']:.2f}  CP {metrics['CP']:.2f}" in outputs["evaluate"]  # the console says what it wrote
    assert "lowest AP: " in outputs["evaluate"]
    assert sorted(p.name for p in (root / "results/evaluate/plots").iterdir()) == ["ap_per_class.png", "pr_curves.png"]

    lines = (root / "results/demo/predictions.txt").read_text().splitlines()
    assert len(lines) == 8  # demo.images, the default: the first 8 images of the test split's digest
    assert all(re.fullmatch(r"\S+/JPEGImages/\d{6}\.jpg prediction: ([a-z]+,)*", line) for line in lines)
    predictions = json.loads((root / "results/demo/predictions.json").read_text())
    assert len(predictions[0]["scores"]) == 10
    heatmaps = root / "results/demo/heatmaps"
    assert sorted(p.stem for p in heatmaps.glob("*.png")) == sorted(Path(p["image"]).stem for p in predictions)
    for item in predictions:
        stem = Path(item["image"]).stem
        assert sorted(p.stem for p in (heatmaps / stem).glob("*.png")) == sorted(item["labels"])


def test_one_mlflow_run_with_params_curves_metrics_and_checkpoint(workspace):
    root = workspace
    run_id = training_run(root / "results/train/best.pt").info.run_id
    experiment = mlflow.get_experiment_by_name("csra")
    assert len(mlflow.search_runs([experiment.experiment_id])) == 1
    run = mlflow.get_run(run_id)
    assert run.data.params["train.lam"] == "0.1" and run.data.params["evaluate.threshold"] == "0.5"
    assert run.data.params["demo.out_dir"] == "results/demo"
    assert run.info.run_name == "synthetic-resnet18"  # dataset (= recipe) and backbone; no git commit in this folder
    assert re.fullmatch(r"train: resnet18, 1 CSRA head, λ 0\.1, 32 px, recipe synthetic, on synthetic \(\d+ images, "
                        r"best epoch picked on val_voc07\.json: \d+ images\): best val mAP \d+\.\d\d at epoch [12] "
                        r"of 2; evaluate: test mAP \d+\.\d\d on test_voc07\.json \(16 images\) of synthetic, model "
                        r"results/train/best\.pt; demo: predictions and heatmaps for 8 images of "
                        r"data/prepared/test\.md5, model results/train/best\.pt",
                        run.data.tags[recorded.NOTE]), run.data.tags[recorded.NOTE]  # one line, a clause per stage
    client = MlflowClient()
    curve = client.get_metric_history(run_id, "val_mAP")
    assert [m.step for m in curve] == [1, 2]
    # metrics.json and MLflow use the same names: evaluate's, and train's final values
    tested = json.loads((root / "results/evaluate/metrics.json").read_text())
    trained = json.loads((root / "results/train/metrics.json").read_text())
    assert {k: run.data.metrics[k] for k in tested} == pytest.approx(tested)
    assert {k: run.data.metrics[k] for k in trained} == pytest.approx(trained)
    assert not client.list_artifacts(run_id, "checkpoints")  # DVC keeps the checkpoint; MLflow says which
    digest = hashlib.md5((root / "results/train/best.pt").read_bytes()).hexdigest()
    assert run.data.tags["checkpoint"] == "results/train/best.pt" and run.data.tags["checkpoint.md5"] == digest
    best = json.loads((root / "results/train/metrics.json").read_text())
    assert run.data.tags["best_epoch"] == str(best["best_epoch"]) and best["best_epoch"] in (1, 2)
    assert run.data.metrics["best_val_mAP"] == pytest.approx(best["best_val_mAP"])
    assert not (root / "results/train/train_state.pt").exists()  # only while a run is unfinished
    assert {a.path for a in client.list_artifacts(run_id, "demo")} >= {"demo/predictions.json", "demo/heatmaps"}
    first = Path(json.loads((root / "results/demo/predictions.json").read_text())[0]["image"]).stem
    assert {a.path for a in client.list_artifacts(run_id, "demo/heatmaps")} >= {f"demo/heatmaps/{first}.png"}
    assert {a.path for a in client.list_artifacts(run_id, "evaluate")} >= {
        "evaluate/metrics.json", "evaluate/per_class.csv", "evaluate/scores.json", "evaluate/plots"}


def test_a_later_execution_records_into_a_run_of_its_own(workspace, monkeypatch):
    root = workspace
    train_run = training_run(root / "results/train/best.pt").info.run_id
    before = mlflow.get_run(train_run).data
    monkeypatch.setattr(recorded, "execution_id", lambda: "another-execution")
    ok("evaluate", "--threshold", "0.3", "--out-dir", "results/evaluate_0.3")
    ok("demo", "--out-dir", "results/demo_again")  # the same execution: the same new run
    after = mlflow.get_run(train_run).data
    assert after.metrics == before.metrics and after.params == before.params  # the baseline is untouched
    runs = mlflow.search_runs(experiment_names=["csra"], output_format="list",
                              filter_string=f"tags.`{EXECUTION}` = 'another-execution'")
    assert len(runs) == 1
    new = runs[0].data
    assert new.tags["csra.train_run_id"] == train_run and new.tags["mlflow.parentRunId"] == train_run
    assert new.params["evaluate.threshold"] == "0.3"
    lower = json.loads((root / "results/evaluate_0.3/metrics.json").read_text())
    assert {k: new.metrics[k] for k in lower} == pytest.approx(lower)  # this execution's evaluate, not the baseline's
    [scored] = runs[0].inputs.dataset_inputs  # the data evaluate scored, as DVC hashes it
    assert scored.tags[0].value == "evaluation" and scored.dataset.digest.endswith(".dir")
    assert new.tags["test.file"] == "data/prepared/test_voc07.json" and len(new.tags["test.digest"]) == 64
    assert {a.path for a in MlflowClient().list_artifacts(runs[0].info.run_id)} >= {"evaluate", "demo"}


def test_without_the_training_run_a_stage_records_what_the_workspace_knows(workspace, tmp_path, monkeypatch,
                                                                          mlflow_template):
    """A clone that pulled the model but not the store: the run and the version say so once and still carry the
    checkpoint, its MD5 and recipe, the commit, and dvc.lock's hash of the data it was trained on."""
    from csra.fileio import file_md5

    (workspace / "dvc.lock").write_text("schema: '2.0'\nstages:\n  prepare:\n    cmd: csra prepare\n    outs:\n"
                                        "    - path: data/prepared\n      md5: 0123abcd.dir\n")
    (tmp_path / "empty").mkdir()
    store = new_store(tmp_path / "empty", mlflow_template)  # a store that never saw the training
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    mlflow.set_tracking_uri(store)
    code, output = run("evaluate", "--threshold", "0.3", "--out-dir", "results/evaluate_0.3")
    assert code == 0, output
    assert output.count("is not in the MLflow store") == 1
    code, output = run("export", "--register", "always")
    assert code == 0 and "is not in the MLflow store" not in output, output  # said once, by the execution's run
    [evaluated] = mlflow.search_runs(experiment_names=["csra"], output_format="list")
    tags, params = evaluated.data.tags, evaluated.data.params
    best = workspace / "results/train/best.pt"
    assert tags["csra.training_run"] == "not in this store" and "csra.train_run_id" not in tags
    assert tags["checkpoint.md5"] == file_md5(best) and tags["recipe"] == params["train.recipe"] == "synthetic"
    assert tags["dataset.digest"] == "0123abcd.dir" and params["train.lam"] == "0.1"
    version = MlflowClient().get_model_version("csra-synthetic", "1")  # export.registered_model: auto
    assert version.tags["dataset.digest"] == "0123abcd.dir"
    assert version.tags["csra.training_run"] == "not in this store"
    assert re.fullmatch(r"synthetic, test mAP \d+\.\d\d \(test_voc07\.json, digest [0-9a-f]{8}\): resnet18, 1 CSRA "
                        r"head, λ 0\.1, 32 px, 10 classes, recipe synthetic\. Serve it: mlflow models serve -m "
                        r"models:/csra-synthetic/1 --env-manager local --port 5001", version.description)
    # the evaluation run is not taken for a training
    assert recorded.training_run_by_md5(mlflow, file_md5(best), "x") is None
    logged = mlflow.get_logged_model(version.source.removeprefix("models:/"))
    assert logged.name == "csra-synthetic"  # the registered model's name
    metrics = {m.key: m for m in logged.metrics}
    lower = json.loads((workspace / "results/evaluate_0.3/metrics.json").read_text())
    assert set(metrics) == set(lower) and not any(k.startswith("system/") for k in metrics)  # evaluate's, only
    assert {m.dataset_name for m in metrics.values()} == {"synthetic: test_voc07.json"}  # on the data it scored


def test_class_count_mismatch_and_unreadable_demo_image(workspace, tmp_path):
    ann = tmp_path / "three.json"
    ann.write_text(json.dumps([{"target": [1, 0, -1], "img_path": "x.jpg"}]))
    code, output = run("evaluate", "--annotations", str(ann))
    assert code == 1 and "3 classes per target, but results/train/best.pt has 10" in output

    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (40, 30), "red").save(images / "good.png")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    output = ok("demo", "--images", str(images), "--out-dir", str(tmp_path / "out"))
    assert "broken.jpg: cannot read image" in output
    assert (tmp_path / "out/predictions.txt").read_text().startswith(f"{images / 'good.png'} prediction: ")


def test_written_scores_rescore_to_the_same_metrics(workspace, tmp_path):
    root = workspace
    ok("evaluate", "--scores", "results/evaluate/scores.json", "--out-dir", str(tmp_path / "again"))
    again = json.loads((tmp_path / "again/metrics.json").read_text())
    assert again == json.loads((root / "results/evaluate/metrics.json").read_text())


def test_per_class_thresholds_travel_in_the_checkpoint_to_demo(workspace, tmp_path):
    from csra.model.checkpoints import load_checkpoint_model

    root = workspace
    thresholds = load_checkpoint_model(root / "results/train/best.pt")[1]["thresholds"]
    assert len(thresholds) == 10 and all(t is None or 0 <= t <= 1 for t in thresholds)
    ok("demo", "--thresholds", "per_class", "--out-dir", str(tmp_path / "pc"))
    predictions = json.loads((tmp_path / "pc/predictions.json").read_text())
    for item in predictions:
        expected = [c for i, (c, s) in enumerate(item["scores"].items())
                    if s >= (0.5 if thresholds[i] is None else thresholds[i])]
        assert item["labels"] == expected
    code, output = run("demo", "--thresholds", "best")
    expected = "params.yaml: demo.thresholds must be one of global, per_class, got 'best'"
    assert code == 1 and expected in output


def files_of(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_same_inputs_give_the_same_bytes_in_another_folder_and_store(trained_workspace, tmp_path,
                                                                         mlflow_template):
    """Every file a stage writes is a function of code, params and data: no temporary name, time, host, path or
    run id inside (the checkpoint's zip archive, the history, the plots, the heatmaps, the digests). The second
    chain is a real second run, in another folder with another MLflow store."""
    root = trained_workspace.root
    (tmp_path / "elsewhere").mkdir()
    outputs = run_chain(tmp_path / "elsewhere", new_store(tmp_path / "elsewhere", mlflow_template))
    assert list(outputs) == list(CHAIN)
    for folder in ("data/prepared", "results/train", "results/evaluate", "results/demo"):
        first, second = files_of(root / folder), files_of(tmp_path / "elsewhere" / folder)
        assert sorted(first) == sorted(second), folder
        assert [name for name in first if first[name] != second[name]] == [], folder
