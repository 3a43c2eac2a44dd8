"""params.yaml is the composition of conf/: `csra params` writes it, and every stage refuses, before any work or
MLflow run, a project's params.yaml that an edit of conf/ has left behind — except under `dvc exp run`, which has
just composed it with its -S overrides."""

import shutil

import mlflow
import pytest
import yaml
from helpers import REPO, assert_one_line_error, ok, run


@pytest.fixture
def project(tmp_path, monkeypatch, mlflow_store):
    """A folder with the repository's conf/ and its composition as params.yaml, the current folder; MLflow in this
    process on the test's store."""
    mlflow.set_tracking_uri(mlflow_store)
    root = tmp_path / "project"
    shutil.copytree(REPO / "conf", root / "conf")
    monkeypatch.chdir(root)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    ok("params")
    return root


def edit_conf(root, file, **values):
    path = root / "conf" / file
    data = yaml.safe_load(path.read_text())
    data.update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_params_writes_the_composition_that_dvc_exp_run_writes(project):
    from dvc.utils.hydra import compose_and_dump

    compose_and_dump(project / "expected.yaml", str(project / "conf"), None, "config", str(project), [])
    assert (project / "params.yaml").read_text() == (project / "expected.yaml").read_text()
    assert "the composition of conf/" in ok("params", "--check")
    assert "already the composition of conf/" in ok("params")


def test_a_stage_refuses_a_params_file_an_edit_of_conf_left_behind_before_any_run(project):
    edit_conf(project, "train/synthetic.yaml", lam=0.3)
    code, output = run("train")
    assert_one_line_error(code, output, "params.yaml: not the composition of conf/ (train.lam: 0.1 here, 0.3 in "
                                        "conf/)", "run `csra params`")
    assert mlflow.search_runs(search_all_experiments=True).empty
    assert not (project / "results").exists() and not (project / "data").exists()
    assert_one_line_error(*run("params", "--check"), "train.lam: 0.1 here, 0.3 in conf/")


def test_a_search_refuses_to_train_trials_its_promotion_would_not_run(project):
    """Promotion runs `dvc exp run`, which composes conf/: trials trained on a hand-edited params.yaml could not be
    reproduced, so the search does not start."""
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("  epochs: 6\n", "  epochs: 1\n"))
    assert_one_line_error(*run("search", "--study", "s", "--trials", "1"), "(train.epochs: 1 here, 6 in conf/)")
    assert not (project / "optuna.db").exists() and mlflow.search_runs(search_all_experiments=True).empty


def test_params_brings_the_edit_in_and_names_what_changed(project):
    edit_conf(project, "config.yaml", defaults=["_self_", {"train": "quick"}])
    output = ok("params")
    assert "train.recipe: synthetic → quick" in output and "train.img_size: 96 → 64" in output
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["epochs"] == 2
    ok("params", "--check")


def test_many_differences_are_still_one_line(project):
    edit_conf(project, "config.yaml", defaults=["_self_", {"train": "coco"}])
    code, output = run("params", "--check")
    assert_one_line_error(code, output, "train.recipe: synthetic here, coco in conf/", "more)")


def test_under_dvc_exp_run_its_composition_with_overrides_stands(project, monkeypatch):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["lam"] = 0.7  # what `dvc exp run -S train.lam=0.7` composes
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    assert_one_line_error(*run("params", "--check"), "train.lam: 0.7 here, 0.1 in conf/")
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lynx")
    ok("params", "--check")


def test_a_params_file_without_conf_beside_it_is_the_users_own(tmp_path, monkeypatch):
    own = tmp_path / "mine" / "params.yaml"
    own.parent.mkdir()
    shutil.copy(REPO / "params.yaml", own)
    monkeypatch.chdir(own.parent)
    ok("params", "--check")  # nothing to compose from: nothing to refuse
    assert_one_line_error(*run("params"), "no conf/config.yaml beside it")


def test_a_broken_conf_is_one_line(project):
    edit_conf(project, "config.yaml", defaults=["_self_", {"train": "no_such_recipe"}])
    assert_one_line_error(*run("params"), "conf: cannot compose:", "no_such_recipe")
