"""The DVC pipeline itself, in a scratch git repository with Hydra composition on: repro, no-op repro, what
`dvc exp show` sees, what a code change makes stale, experiments with -S (a value, a recipe), plots, and a queued
sweep run two at a time. The tests from the first repro to the sweep share one project, built and reproduced once
(`reproduced`); each test puts back what it changed (`pipeline_project`), so they may run in any order; only the
MLflow store's list of runs grows from one to the next."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mlflow
import optuna
import pytest
import yaml
from helpers import REPO, compose, edit_params, new_project, new_store, ok, sh, tiny_conf, training_run

from csra.fileio import file_md5


def build_project(repo: Path, root: Path) -> Path:
    """A scratch git repository at root holding repo's pipeline with the tests' tiny settings."""
    return new_project(repo, root, tiny_conf)


@pytest.fixture
def project(tmp_path):
    return build_project(REPO, tmp_path / "project")


def test_the_project_is_built_from_the_repository_files_never_from_its_caches_stores_or_results(tmp_path):
    """The workspace a user ran the pipeline in (a DVC cache, an MLflow store, results, prepared data, a queued
    experiment's files) gives the DVC tests the same project as a fresh clone."""
    clone = tmp_path / "clone"
    sh("git", "clone", "-q", str(REPO), str(clone), cwd=tmp_path)
    planted = [".dvc/cache/files/md5/66/93721b146aee0e90ea8e981abcf716", ".dvc/tmp/exps/run/x.json", "mlflow.db",
               "mlartifacts/1/a/artifacts/model.pt2", "results/train/best.pt", "data/prepared/classes.txt",
               "results/evaluate/scores.json", "csra/__pycache__/errors.cpython-311.pyc"]
    for name in planted:
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        (clone / name).write_bytes(b"the user's")
    root = build_project(clone, tmp_path / "project")
    copied = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".git/" not in
              p.relative_to(root).as_posix() + "/"}
    assert not copied & set(planted)
    assert {"dvc.yaml", ".dvc/config", "data/raw/README.md", "csra/errors.py", "params.yaml"} <= copied


def dvc(*args, cwd):
    return sh(sys.executable, "-m", "dvc", *args, cwd=cwd)


def leaves(node, prefix=""):
    return [k for key, v in node.items() for k in (leaves(v, f"{prefix}{key}.") if isinstance(v, dict)
                                                   else [f"{prefix}{key}"])]


def data_of(entry):
    """The data of a row of `dvc exp show --json`: the workspace's, or an experiment's."""
    return entry["revs"][0]["data"] if "revs" in entry else entry["data"]


def params_of(entry):
    return data_of(entry)["params"]["params.yaml"]["data"]


SWEEP_TIMEOUT_S = 400


@dataclass(frozen=True)
class Reproduced:
    """The scratch project after its first `dvc repro` (then committed), and what its stores held right then."""

    root: Path
    store: str  # the MLflow store every dvc command of these tests logs into
    first: str  # the output of the first `dvc repro`
    weights: dict  # MD5 → the paths of a file over 1 MiB in the DVC cache, results/ and the MLflow store
    best: str  # the MD5 of results/train/best.pt


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory, mlflow_template) -> Reproduced:
    """The project built and reproduced once for the tests below, its outputs committed: each test starts from
    this state, and `pipeline_project` puts it back after each test (git checkout, git clean, dvc checkout), so
    the tests do not depend on one another's success; the one thing that accumulates is the MLflow store's runs."""
    root = build_project(REPO, tmp_path_factory.mktemp("dvc") / "project")
    folder = tmp_path_factory.mktemp("dvc-mlflow")
    store = new_store(folder, mlflow_template)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", store)  # what the dvc subprocesses log into
        first = dvc("repro", cwd=root)
        weights = {}
        for f in (f for place in (root / ".dvc/cache", root / "results", folder) for f in place.rglob("*")
                  if f.is_file() and f.stat().st_size > 1 << 20):
            weights.setdefault(file_md5(f), []).append(f)
        sh("git", "add", "-A", cwd=root)
        sh("git", "commit", "-qm", "pipeline outputs", cwd=root)
    return Reproduced(root, store, first, weights, file_md5(root / "results/train/best.pt"))


@pytest.fixture
def pipeline_project(reproduced, monkeypatch) -> Path:
    """The reproduced project, with MLflow (the dvc subprocesses and this process) on its store; whatever the test
    changed in the project is put back afterwards."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", reproduced.store)
    mlflow.set_tracking_uri(reproduced.store)
    yield reproduced.root
    if sh("git", "status", "--porcelain", cwd=reproduced.root):
        sh("git", "checkout", "-q", "--", ".", cwd=reproduced.root)
        sh("git", "clean", "-fdq", cwd=reproduced.root)
        dvc("checkout", "-f", cwd=reproduced.root)


def test_replacing_a_tracked_image_with_cp_keeps_the_cached_original(tmp_path):
    """With the repository's cache setting (.dvc/config), `cp new.jpg data/raw/NAME/…` — even as root, who may write
    a read-only file — changes the workspace file only: the cache object of the original MD5 keeps the original
    bytes, `dvc status` and `dvc add` see the change, and `dvc checkout` of the old .dvc file brings it back."""
    root = tmp_path / "project"
    photos = root / "data/raw/photos"
    photos.mkdir(parents=True)
    sh("git", "init", "-q", cwd=root)
    dvc("init", "-q", cwd=root)
    shutil.copyfile(REPO / ".dvc/config", root / ".dvc/config")
    original = b"\xff\xd8 the original photo"
    (photos / "000012.jpg").write_bytes(original)
    (photos / "000013.jpg").write_bytes(b"\xff\xd8 another photo")
    dvc("add", "data/raw/photos", cwd=root)
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "photos", cwd=root)
    md5 = hashlib.md5(original).hexdigest()
    cached = root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    assert cached.read_bytes() == original
    (tmp_path / "new.jpg").write_bytes(b"\xff\xd8 a new photo")
    shutil.copyfile(tmp_path / "new.jpg", photos / "000012.jpg")
    assert cached.read_bytes() == original
    assert "modified:" in dvc("status", cwd=root)
    dvc("add", "data/raw/photos", cwd=root)
    assert "modified:" not in dvc("status", cwd=root) and "data/raw/photos.dvc" in sh("git", "status", cwd=root)
    sh("git", "checkout", "-q", "--", "data/raw/photos.dvc", cwd=root)
    dvc("checkout", "-f", "data/raw/photos", cwd=root)
    assert (photos / "000012.jpg").read_bytes() == original


def test_the_first_repro_runs_the_five_stages_and_writes_their_outputs(reproduced):
    project = reproduced.root
    for stage in ("prepare", "train", "evaluate", "demo", "export"):
        assert f"Running stage '{stage}'" in reproduced.first
    # the mAP written is the one the written scores give on the prepared test file
    from csra.evaluate.metrics import evaluate_scores

    scores = json.loads((project / "results/evaluate/scores.json").read_text())
    targets = [item["target"] for item in json.loads((project / "data/prepared/test_voc07.json").read_text())]
    recomputed, _ = evaluate_scores([s["scores"] for s in scores], targets, "voc07", 0.5)
    mAP = json.loads((project / "results/evaluate/metrics.json").read_text())["mAP"]
    assert 0 < mAP <= 100 and mAP == pytest.approx(recomputed["mAP"], abs=1e-4)
    assert (project / "results/demo/predictions.json").is_file()
    assert len(list((project / "results/demo/heatmaps").glob("*.png"))) == 8  # the first 8 of test.md5
    assert {p.name for p in (project / "results/export").iterdir()} == {"export.json"}


def test_the_weights_are_stored_as_the_checkpoint_and_the_served_model_only(reproduced):
    """The checkpoint (in the DVC cache and the workspace: cache.type reflink,copy shares the blocks where the file
    system can, else copies) and the served model (the MLflow registry): MLflow keeps no copy of the checkpoint."""
    copies, root = reproduced.weights, reproduced.root
    [served] = [paths for md5, paths in copies.items() if md5 != reproduced.best]
    assert len(copies) == 2 and [f.name for f in served] == ["model.pt2"], copies
    cached = root / ".dvc/cache/files/md5" / reproduced.best[:2] / reproduced.best[2:]
    assert sorted(copies[reproduced.best]) == sorted([cached, root / "results/train/best.pt"]), copies


def test_a_second_repro_runs_nothing(pipeline_project):
    assert "Running stage" not in dvc("repro", cwd=pipeline_project)


def test_a_forced_retrain_writes_the_same_checkpoint_bytes(pipeline_project):
    """The lock and every tracked file stay as committed."""
    forced = dvc("repro", "-f", "-s", "train", cwd=pipeline_project)
    assert "Running stage 'train'" in forced and sh("git", "status", "--porcelain", cwd=pipeline_project) == ""


def test_exp_show_sees_the_effective_recipe_and_few_params(pipeline_project):
    shown = json.loads(dvc("exp", "show", "--json", cwd=pipeline_project))
    params = params_of(shown[0])
    assert params["train"]["lam"] == 0.1 and params["train"]["recipe"] == "synthetic"
    assert len(leaves(params)) < 80


def test_an_unused_recipe_or_the_heatmap_code_leave_train_and_evaluate_up_to_date(pipeline_project):
    project = pipeline_project
    (project / "conf/train/coco.yaml").write_text("defaults: [paper, _self_]\nrecipe: coco\nnum_heads: 8\n")
    assert re.findall(r"^(\w+):", dvc("status", cwd=project), re.M) == ["params"]  # the check alone: seconds
    with (project / "csra/deploy/heatmaps.py").open("a") as f:
        f.write("\n# edited\n")
    stale = dvc("status", cwd=project)
    assert "demo:" in stale and "train:" not in stale and "evaluate:" not in stale


def test_a_new_lambda_reruns_train_not_prepare(pipeline_project):
    """A dry run; the stages after train depend on its best.pt."""
    data = yaml.safe_load((pipeline_project / "params.yaml").read_text())
    data["train"]["lam"] = 0.3
    (pipeline_project / "params.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    dry = dvc("repro", "--dry", cwd=pipeline_project)
    assert "Running stage 'train'" in dry and "Running stage 'prepare'" not in dry


def test_an_edit_of_conf_stops_repro_until_params_composes_it_then_reruns_what_it_changes(pipeline_project):
    project = pipeline_project
    config = yaml.safe_load((project / "conf/config.yaml").read_text())
    config["demo"]["thresholds"] = "per_class"
    (project / "conf/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # DVC's `python` is the tests'
    stopped = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=project, capture_output=True, text=True,
                             env={**os.environ, "PATH": path})
    assert stopped.returncode != 0 and "Running stage 'prepare'" not in stopped.stdout
    assert ("error: params.yaml: not the composition of conf/ (demo.thresholds: global here, per_class in conf/): "
            "run `csra params`") in stopped.stderr
    sh(sys.executable, "-m", "stages.cli", "params", cwd=project)
    would = dvc("repro", "--dry", cwd=project)  # the stages run with params.yaml as the tests of each one check
    assert re.findall(r"Running stage '(\w+)'", would) == ["params", "demo"]


def test_a_search_trains_its_trials_and_its_best_becomes_an_experiment(pipeline_project, monkeypatch):
    """`csra search` in the project: a trial, then the best as the DVC experiment <study>-best, which
    reproduces the trial's best validation mAP; `dvc exp show` lists it beside the baseline, MLflow holds its run
    (named apart from the study's parent run, `study <study>`) and the study's parent run names it."""
    project = pipeline_project
    space = {"sampler": {"name": "grid"}, "pruner": "none", "params": {"train.lam": {"choices": [0.2, 0.7]}}}
    (project / "conf/search/pair.yaml").write_text(yaml.safe_dump(space))
    monkeypatch.chdir(project)
    out = ok("search", "--study", "pair", "--space", "pair", "--trials", "1")  # one trial: the promotion is the point
    best = optuna.load_study(study_name="pair", storage=f"sqlite:///{project / 'optuna.db'}").best_trial
    assert f"DVC experiment pair-best: best val mAP {best.value:.4f} = the trial's" in out
    shown = json.loads(dvc("exp", "show", "--json", cwd=project))
    experiments = {e.get("name"): e for row in shown for e in (row.get("experiments") or [])}
    assert params_of(experiments["pair-best"])["train"]["lam"] == best.params["train.lam"]
    metrics = data_of(experiments["pair-best"])["metrics"]["results/train/metrics.json"]["data"]
    assert metrics["best_val_mAP"] == best.value
    [trained] = mlflow.search_runs(experiment_names=["csra"], output_format="list",
                                   filter_string="tags.`dvc.exp_name` = 'pair-best'")
    assert trained.data.metrics["best_val_mAP"] == best.value and trained.data.params["train.lam"] == str(
        best.params["train.lam"])
    [parent] = mlflow.search_runs(experiment_names=["csra"], output_format="list",
                                  filter_string="tags.`optuna.space` = 'pair'")
    assert parent.data.tags["dvc.experiment"] == "pair-best" and parent.data.tags["best_trial"] == str(best.number)
    assert (parent.info.run_name, trained.info.run_name) == ("study pair", "synthetic-resnet18-pair-best")
    (project / "optuna.db").unlink()


def test_plots_show_writes_the_page(pipeline_project, tmp_path):
    dvc("plots", "show", "-o", str(tmp_path / "plots"), cwd=pipeline_project)
    assert (tmp_path / "plots" / "index.html").is_file()


def followed(name, project, deadline):
    """The log of queued experiment name, followed until its task ends: asked again while no worker has started it
    yet (`queue start` returns at once)."""
    while True:
        try:
            return sh(sys.executable, "-m", "dvc", "queue", "logs", "-f", name, cwd=project,
                      timeout=max(1, deadline - time.monotonic()))
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(2)


def queued(project):
    """The names of the experiments waiting in the queue, and their rows of `dvc exp show`."""
    names = re.findall(r"^\w+\s+(\S+)\s+.*Queued$", dvc("queue", "status", cwd=project), re.MULTILINE)
    shown = json.loads(dvc("exp", "show", "--json", cwd=project))
    experiments = {e.get("name"): e for row in shown for e in (row.get("experiments") or [])}
    return names, [experiments[name] for name in names]


def test_a_queued_sweep_runs_two_at_a_time_each_into_its_own_run(pipeline_project, tmp_path):
    """A queued sweep composes each experiment's params from conf/ exactly (a recipe switch and a swept value), and
    runs two at a time: each runs the stages that read its value, into a run of its own, named after it and linked
    to the training run, which stays as it was, with its writes there; `dvc exp show` lists each with its value.
    (The sweep that runs changes what demo alone reads — another image folder, with either thresholds — to stay
    cheap: the experiment that retrains and re-runs evaluate, demo and export is the search's, above; two trainings
    at once into one store are in search/test_study.py.)"""
    project = pipeline_project
    baseline = training_run(project / "results/train/best.pt").info.run_id
    before = mlflow.get_run(baseline).data
    dvc("exp", "run", "--queue", "-S", "train=two_heads", "-S", "train.head=csra,gap", cwd=project)
    names, experiments = queued(project)
    assert len(names) == 2, names
    composed = [params_of(e)["train"] for e in experiments]
    assert sorted(q["head"] for q in composed) == ["csra", "gap"]
    assert all(q["recipe"] == "two_heads" and q["num_heads"] == 2 and q["lam"] == 0.5 for q in composed)
    dvc("queue", "remove", "--queued", cwd=project)

    images = "data/prepared/synthetic/VOC2007/JPEGImages"  # the demo of another folder, either thresholds
    dvc("exp", "run", "--queue", "-S", f"demo.images={images}", "-S", "demo.thresholds=global,per_class", cwd=project)
    names, experiments = queued(project)
    assert sorted(params_of(e)["demo"]["thresholds"] for e in experiments) == ["global", "per_class"]
    try:
        sh(sys.executable, "-m", "dvc", "queue", "start", "-j", "2", cwd=project, log=tmp_path / "queue-start.log")
        deadline = time.monotonic() + SWEEP_TIMEOUT_S
        logs = [followed(name, project, deadline) for name in names]
    finally:
        dvc("queue", "stop", cwd=project)
    status = dvc("queue", "status", cwd=project)
    assert all(re.search(rf"{name}\s+.*Success", status) for name in names), f"{status}\n" + "\n".join(logs)
    for log in logs:
        assert re.findall(r"Running stage .(\w+).", log) == ["params", "demo"], log  # the check; the one reader
    after = mlflow.get_run(baseline).data
    assert after.metrics == before.metrics and after.params == before.params and after.tags == before.tags

    runs = mlflow.search_runs(experiment_names=["csra"], output_format="list",
                              filter_string="tags.`dvc.exp_name` != ''")
    runs = [r for r in runs if r.data.tags["dvc.exp_name"] in names]
    assert sorted(r.info.run_name for r in runs) == sorted(f"synthetic-resnet18-{n}" for n in names)  # one each
    shown = json.loads(dvc("exp", "show", "--json", cwd=project))
    experiments = {e.get("name"): e for row in shown for e in (row.get("experiments") or [])}
    client = mlflow.MlflowClient()
    for r in runs:  # each execution's writes are in its run
        assert r.data.tags["csra.train_run_id"] == baseline
        thresholds = params_of(experiments[r.data.tags["dvc.exp_name"]])["demo"]["thresholds"]
        assert r.data.params["demo.thresholds"] == thresholds
        assert {a.path for a in client.list_artifacts(r.info.run_id)} >= {"demo"}
        locked = yaml.safe_load(sh("git", "show", f"{r.data.tags['dvc.exp_ref']}:dvc.lock", cwd=project))
        assert locked["stages"]["demo"]["params"]["params.yaml"]["demo"]["thresholds"] == thresholds  # its commit


def make_raw_csv(folder: Path) -> None:
    """A tiny custom_csv dataset: 16 train and 8 test images of two colours, labelled by colour."""
    from PIL import Image

    colours = {"red": (220, 30, 30), "blue": (30, 30, 220)}
    for split, count in (("train", 16), ("test", 8)):
        rows = []
        for i in range(count):
            label = "red" if i % 2 else "blue"
            (folder / "images").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (48, 40), colours[label]).save(folder / "images" / f"{split}_{i}.png")
            rows.append(f"images/{split}_{i}.png,{label}\n")
        (folder / f"{split}.csv").write_text("".join(rows))


def stale(project: Path) -> set[str]:
    """The stages `dvc status` reports as changed."""
    return set(re.findall(r"^(\w+):", dvc("status", cwd=project), re.MULTILINE))


def test_a_changed_raw_image_makes_stale_the_stages_that_read_it_and_no_other(project):
    """Real data under data/raw, tracked by `dvc add`: once prepare has re-run, a changed test image makes
    evaluate stale and leaves train up to date; a changed training image makes train stale."""
    from PIL import Image

    raw = project / "data/raw/mini"
    make_raw_csv(raw)
    edit_params(project / "conf/config.yaml", **{"data.dataset": "custom_csv", "data.raw_path": "data/raw/mini",
                                                 "data.val_fraction": 0.25})
    edit_params(project / "conf/train/synthetic.yaml", epochs=1)
    compose(project)
    dvc("repro", "-s", "params", cwd=project)
    dvc("add", "data/raw/mini", cwd=project)
    ran = re.findall(r"Running stage '(\w+)'", dvc("repro", "evaluate", cwd=project))
    assert ran == ["prepare", "train", "evaluate"]
    digests = (project / "data/prepared/test.md5").read_text().splitlines()
    assert len(digests) == 2 + 8 and digests[-1].endswith("  data/raw/mini/images/test_7.png")
    assert stale(project) == {"demo", "export"}  # never run here

    Image.new("RGB", (48, 40), (30, 220, 30)).save(raw / "images/test_3.png")  # other pixels, the same name
    dvc("add", "data/raw/mini", cwd=project)
    assert "prepare" in stale(project)
    dvc("repro", "-s", "prepare", cwd=project)
    assert stale(project) == {"evaluate", "demo", "export"}  # train did not read it

    Image.new("RGB", (48, 40), (30, 220, 30)).save(raw / "images/train_5.png")
    dvc("add", "data/raw/mini", cwd=project)
    dvc("repro", "-s", "prepare", cwd=project)
    assert stale(project) == {"train", "evaluate", "demo", "export"}
