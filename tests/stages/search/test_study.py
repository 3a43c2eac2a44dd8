"""`csra search`: a study over two worker processes (trials pruned and complete, each in its own MLflow run nested
under the study's), a later invocation that continues it, a worker killed mid-trial, an invocation that ends while
another's trials run (the study's run stays RUNNING, naming them) or is interrupted, and bad spaces refused before
any trial; then, function by function, a dimension's refusals, what a continued study compares, the best trial
(complete only), promotion's exact overrides and a trial's thread count. The best trial as a DVC experiment is in
test_dvc.py (it needs the DVC project)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import mlflow
import optuna
import pytest
import torch
import yaml
from helpers import REPO, assert_one_line_error, compose, edit_params, ok, run, tiny_conf
from optuna.trial import TrialState

from csra.errors import CSRAError

# A grid whose every point is certain to be pruned or not: the threshold pruner condemns any trial that reaches
# epoch 2 (no mAP is above 101), so the 3-epoch points stop at the end of epoch 2 and the 1-epoch points complete.
GRID = {"sampler": {"name": "grid", "seed": 0}, "pruner": {"name": "threshold", "lower": 101.0, "n_warmup_steps": 2},
        "params": {"train.epochs": {"choices": [1, 3]}, "train.lam": {"choices": [0.1, 0.3, 0.5]}}}


@pytest.fixture
def spaces(tiny_params, tmp_path, mlflow_store):
    """The repository's conf/ at the tests' tiny sizes (and a test space), params.yaml its composition; this
    process's MLflow client on the test's store."""
    mlflow.set_tracking_uri(mlflow_store)
    shutil.copytree(REPO / "conf", tmp_path / "conf")
    tiny_conf(tmp_path / "conf")
    compose(tmp_path)
    (tmp_path / "conf" / "search" / "grid.yaml").write_text(yaml.safe_dump(GRID))
    return tmp_path


@pytest.fixture
def folder(spaces):
    """spaces, with the data prepared."""
    ok("prepare")
    return spaces


def trials(folder, name, storage=None):
    """The trials of study name in its storage (default: the embedded one, folder/optuna.db)."""
    if storage is not None:
        from optuna.storages.journal import JournalFileBackend

        storage = optuna.storages.JournalStorage(JournalFileBackend(str(storage)))
    study = optuna.load_study(study_name=name, storage=storage or f"sqlite:///{folder / 'optuna.db'}")
    return study.get_trials()


def nested_runs(parent_id):
    return mlflow.search_runs(search_all_experiments=True, output_format="list",
                              filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")


def csra(*args, cwd):
    """`csra *args` as a process of its own (its workers fork from it): (exit code, output)."""
    done = subprocess.run([sys.executable, "-m", "stages.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    return done.returncode, done.stdout + done.stderr


def test_a_study_over_two_workers_prunes_records_and_continues(folder):
    code, out = csra("search", "--study", "s", "--space", "grid", "--trials", "4", "--jobs", "2", "--no-promote",
                     cwd=folder)
    assert code == 0, out
    done = trials(folder, "s")
    assert [t.number for t in done] == [0, 1, 2, 3]
    points = [(t.params["train.epochs"], t.params["train.lam"]) for t in done]
    assert len(set(points)) == 4  # no two workers ran the same trial or grid point
    assert len({t.user_attrs["pid"] for t in done}) == 2  # both workers ran trials
    for t in done:  # a pruned trial stopped at the end of the epoch that condemned it
        if t.params["train.epochs"] == 3:
            assert t.state == TrialState.PRUNED and sorted(t.intermediate_values) == [1, 2]
        else:
            assert t.state == TrialState.COMPLETE and t.value == t.intermediate_values[1]
    assert {t.state for t in done} == {TrialState.PRUNED, TrialState.COMPLETE}
    best = max((t for t in done if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert f"best: trial {best.number}, val mAP {best.value:.2f}" in out

    [parent] = mlflow.search_runs(experiment_names=["csra"], output_format="list",
                                  filter_string="attributes.run_name = 'study s'")
    assert parent.data.tags["best_trial"] == str(best.number) and parent.info.status == "FINISHED"
    assert parent.data.tags["running_trials"] == ""  # no trial runs: the study's run ended
    assert parent.data.tags["mlflow.note.content"].startswith(f"study: Optuna study s, best of 2 complete trials: "
                                                               f"trial {best.number}, val mAP {best.value:.2f}")
    assert parent.data.metrics["best_val_mAP"] == pytest.approx(best.value)
    assert parent.data.params["space.train.lam"] == "one of 0.1, 0.3, 0.5"
    runs = {int(r.data.tags["optuna.trial"]): r for r in nested_runs(parent.info.run_id)}
    assert sorted(runs) == [0, 1, 2, 3]
    client = mlflow.MlflowClient()
    for t in done:
        r = runs[t.number]
        assert r.info.run_name == f"s-{t.number} epochs={t.params['train.epochs']} lam={t.params['train.lam']}"
        assert r.data.tags["mlflow.note.content"].startswith(f"trial: {t.number} of study s, train.epochs=")
        assert r.data.params["train.epochs"] == str(t.params["train.epochs"])  # params.yaml's names
        assert r.data.params["train.lam"] == str(t.params["train.lam"])
        assert r.data.params["train.model"] == "resnet18"  # with the rest of params.yaml
        state, status = ("pruned", "KILLED") if t.state == TrialState.PRUNED else ("complete", "FINISHED")
        assert (r.data.tags["optuna.state"], r.info.status) == (state, status)
        curve = client.get_metric_history(r.info.run_id, "val_mAP")
        assert {m.step: m.value for m in curve} == pytest.approx(t.intermediate_values)

    # a later invocation continues the study: its space, its parent run, the next trial numbers
    ok("search", "--study", "s", "--trials", "1", "--no-promote")
    assert [t.number for t in trials(folder, "s")] == [0, 1, 2, 3, 4]
    assert len(mlflow.search_runs(experiment_names=["csra"], filter_string="attributes.run_name = 'study s'",
                                  output_format="list")) == 1
    assert sorted(int(r.data.tags["optuna.trial"]) for r in nested_runs(parent.info.run_id)) == [0, 1, 2, 3, 4]

    # its best becomes a DVC experiment only in a DVC project (test_dvc.py); a study must exist to be promoted
    best = max((t for t in trials(folder, "s") if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert_one_line_error(*run("search", "--study", "s", "--promote", "--trials", "0"),
                          f"is not a DVC project in a git repository with a commit: the best trial ({best.number})")
    assert_one_line_error(*run("search", "--study", "nope", "--promote", "--trials", "0"), "no study nope in sqlite:///")

    # its space is the one it began with
    GRID["params"]["train.lam"]["choices"].append(0.9)
    try:
        (folder / "conf" / "search" / "grid.yaml").write_text(yaml.safe_dump(GRID))
    finally:
        GRID["params"]["train.lam"]["choices"].pop()
    assert_one_line_error(*run("search", "--study", "s", "--trials", "1"), "study s searches space grid as it was")
    # and the params it began with (but the machine's own: device, loader processes)
    (folder / "conf" / "search" / "grid.yaml").write_text(yaml.safe_dump(GRID))
    edit_params(folder / "conf/train/synthetic.yaml", batch_size=4)
    edit_params(folder / "conf/config.yaml", **{"train.num_workers": 1, "data.val_fraction": 0.2})
    ok("params")
    assert_one_line_error(*run("search", "--study", "s", "--trials", "1"), "study s's trials trained from other "
                                                                           "params: params.yaml differs in "
                                                                           "data.val_fraction (0.1 then, 0.2 now), "
                                                                           "train.batch_size (8 then, 4 now);")
    assert len(trials(folder, "s")) == 5


def parent_of(study):
    """The study's MLflow parent run, as the store has it now."""
    [parent] = mlflow.search_runs(experiment_names=["csra"], filter_string=f"attributes.run_name = 'study {study}'",
                                  output_format="list")
    return parent


def sent_epoch_1(parent, number):
    """Wait until the store holds epoch 1's metrics of trial number (its records are sent by a thread: outbox.py)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [r for r in nested_runs(parent.info.run_id) if r.data.tags.get("optuna.trial") == str(number)]
        if found and "val_mAP" in found[0].data.metrics:
            return
        time.sleep(0.05)
    pytest.fail(f"trial {number}: epoch 1's metrics never reached the store")


def test_a_worker_killed_mid_trial_loses_that_trial_alone(folder):
    """On a journal file (a study's storage on a shared file system) as on a database. While the invocation's trials
    run, another invocation that ends leaves the study's run RUNNING, naming them; the last to end closes it."""
    journal = folder / "shared" / "k.journal"
    space = {"sampler": {"name": "grid"}, "pruner": "none", "params": {"train.epochs": {"choices": [4]},
                                                                        "train.lam": {"choices": [0.2, 0.4]}}}
    (folder / "conf" / "search" / "long.yaml").write_text(yaml.safe_dump(space))
    # no thread of the worker paused below writes to the MLflow store (a paused write would hold its lock)
    edit_params(folder / "conf/config.yaml", **{"tracking.system_metrics": 0})
    ok("params")
    process = subprocess.Popen([sys.executable, "-m", "stages.cli", "search", "--study", "k", "--space", "long",
                                "--trials", "2", "--jobs", "2", "--storage", str(journal), "--no-promote"],
                               cwd=folder, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    pids, killed, paused, checked, lines = {}, None, False, None, []
    deadline = time.monotonic() + 240
    try:
        for line in process.stdout:
            lines.append(line)
            if started := re.match(r"trial (\d+) \(pid (\d+)", line):
                pids[int(started[1])] = int(started[2])
            epoch = re.match(r"trial (\d+): epoch\s+1/4", line)  # the trial's records of epoch 1 are written
            if killed is None and epoch and pids[int(epoch[1])] != process.pid:  # a forked worker, mid-trial
                killed = int(epoch[1])
                os.kill(pids[killed], signal.SIGKILL)
            elif not paused and epoch and pids[int(epoch[1])] == process.pid:  # this one: paused, mid-trial
                sent_epoch_1(parent_of("k"), int(epoch[1]))  # its records' thread idle, holding no lock of the store
                process.send_signal(signal.SIGSTOP)
                paused = True
            if killed is not None and paused and checked is None:  # another invocation ends meanwhile
                parent = parent_of("k")  # each trial's start named it: both trials run as far as the study knows
                assert (parent.info.status, parent.data.tags["running_trials"]) == ("RUNNING", "0, 1"), "".join(lines)
                code, out = run("search", "--study", "k", "--storage", journal, "--trials", "0", "--no-promote")
                assert code == 0, out
                assert "study k: its MLflow run stays open (RUNNING) for trials 0, 1 of other workers" in out
                parent = parent_of("k")
                assert (parent.info.status, parent.data.tags["running_trials"]) == ("RUNNING", "0, 1")
                assert parent.data.tags["mlflow.note.content"].endswith("; running: trials 0, 1")
                process.send_signal(signal.SIGCONT)
                checked = len(lines)
            assert time.monotonic() < deadline, "".join(lines)
        assert process.wait(timeout=60) == 0, "".join(lines)
    finally:
        process.kill()
    out = "".join(lines)
    assert killed is not None and checked is not None, out
    assert f"was killed (signal 9) in trial {killed}: marked failed" in out
    assert "stays open" not in "".join(lines[checked:])  # the last to end closed the study's run
    states = {t.number: t.state for t in trials(folder, "k", journal)}
    other = 1 - killed
    assert states == {killed: TrialState.FAIL, other: TrialState.COMPLETE}
    parent = parent_of("k")
    assert (parent.info.status, parent.data.tags["running_trials"]) == ("FINISHED", "")
    assert "running" not in parent.data.tags["mlflow.note.content"]
    runs = {int(r.data.tags["optuna.trial"]): r for r in nested_runs(parent.info.run_id)}
    assert (runs[killed].info.status, runs[killed].data.tags["optuna.state"]) == ("FAILED", "failed")
    assert (runs[other].info.status, runs[other].data.tags["optuna.state"]) == ("FINISHED", "complete")
    assert len(mlflow.MlflowClient().get_metric_history(runs[other].info.run_id, "val_mAP")) == 4


def test_an_interrupted_invocation_ends_the_studys_run_killed_unless_other_trials_run(spaces, monkeypatch):
    """An interrupt (Ctrl-C; KeyboardInterrupt or a subclass) in a trial: Optuna fails the trial; the study's run
    ends KILLED when no other trial runs, and stays RUNNING, naming them, when some do (another worker's, here one
    asked by this test); a later invocation closes it once none runs."""
    from stages import train as train_stage

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_stage, "setup", interrupted)  # the trial's first step after its run starts
    storage = f"sqlite:///{spaces / 'optuna.db'}"
    code, out = run("search", "--study", "i", "--space", "grid", "--trials", "2", "--no-promote")
    assert code == 130 and "trial 0 failed: KeyboardInterrupt" in out and "stays open" not in out, out
    parent = parent_of("i")
    assert (parent.info.status, parent.data.tags["running_trials"]) == ("KILLED", "")
    assert [t.state for t in trials(spaces, "i")] == [TrialState.FAIL]

    other = optuna.load_study(study_name="i", storage=storage).ask()  # trial 1: another worker's, running
    code, out = run("search", "--study", "i", "--trials", "1", "--no-promote")
    assert code == 130 and "study i: its MLflow run stays open (RUNNING) for trial 1 of other workers" in out, out
    parent = parent_of("i")
    assert (parent.info.status, parent.data.tags["running_trials"]) == ("RUNNING", "1")
    assert [t.state for t in trials(spaces, "i")] == [TrialState.FAIL, TrialState.RUNNING, TrialState.FAIL]

    optuna.load_study(study_name="i", storage=storage).tell(other, state=TrialState.FAIL)
    ok("search", "--study", "i", "--trials", "0", "--no-promote")
    parent = parent_of("i")
    assert (parent.info.status, parent.data.tags["running_trials"]) == ("FINISHED", "")


@pytest.mark.parametrize(("space", "message"), [
    ({"params": {"train.lamda": {"low": 0.1, "high": 0.5}}}, "params.train.lamda: not a searchable key (did you "
                                                             "mean train.lam?)"),
    ({"params": {"train.lam": {"low": 0.5, "high": 0.1}}}, "params.train.lam: the range 0.5..0.1 is empty"),
    ({"params": {"train.num_heads": {"choices": [1, 3]}}}, "params.train.num_heads: 3 is refused: train.num_heads"),
    ({"params": {"train.lr": {"low": 0.0, "high": 0.1}}}, "params.train.lr: 0.0 is refused: train.lr"),
    ({"params": {"train.lr": {"low": 0.0, "high": 0.1, "log": True}}}, "a log scale needs low > 0"),
    ({"params": {"train.optimizer": {"low": 1, "high": 2}}}, "train.optimizer is not a number; give its choices"),
    ({"params": {"train.lam": {"low": 0.1, "high": 0.5}}, "sampler": "grid"}, "sampler grid takes choices only"),
    ({"params": {"train.lam": [0.1]}, "pruner": {"name": "median", "warmup": 1}}, "pruner {'name': 'median', "
                                                                                 "'warmup': 1}:"),
    ({"params": {}}, "params must map at least one params.yaml key"),
    ({"params": {"train.lam": [0.1]}, "sampling": "tpe"}, "unknown key sampling (did you mean sampler?)"),
])
def test_a_bad_space_is_one_error_line_before_any_trial(spaces, space, message):
    folder = spaces
    (folder / "conf" / "search" / "bad.yaml").write_text(yaml.safe_dump(space))
    assert_one_line_error(*run("search", "--space", "bad", "--trials", "1"), "conf/search/bad.yaml: ", message)
    assert not (folder / "optuna.db").exists()
    assert not mlflow.search_runs(search_all_experiments=True, output_format="list")


def test_an_unknown_space_names_the_spaces(spaces):
    assert_one_line_error(*run("search", "--space", "nope"), "--space nope: no conf/search/nope.yaml; the spaces "
                                                             "are: ablation, grid, paper")


def test_the_trial_table_rounds_values_to_what_they_mean(capsys):
    from optuna.distributions import FloatDistribution, IntDistribution

    from stages.search.records import summary

    study = optuna.create_study(study_name="r", direction="maximize")
    dims = {"train.lr": FloatDistribution(1e-4, 1e-1, log=True), "train.lam": FloatDistribution(0.0, 1.0),
            "train.num_heads": IntDistribution(1, 8)}
    study.add_trial(optuna.trial.create_trial(params={"train.lr": 0.0012345678901234, "train.lam": 0.13125478963214,
                                                      "train.num_heads": 4},
                                              distributions=dims, value=97.0234567891234,
                                              intermediate_values={1: 97.0234567891234}))
    summary(study)
    out = capsys.readouterr().out
    assert re.search(r"\n\s+0\s+complete\s+97\.02\s+1\s+0\.131\s+0\.00123\s+4\n", out), out
    assert not re.search(r"\d\.\d{6}", out), out  # no float printed to 16 digits


def test_a_trial_the_study_and_its_promoted_experiment_are_named_apart():
    from stages.search.records import experiment_name, study_run_name, trial_name

    names = {study_run_name("tiny"), experiment_name("tiny"), trial_name("tiny", 0, {"train.lam": 0.13125478963})}
    assert names == {"study tiny", "tiny-best", "tiny-0 lam=0.131"}
    assert trial_name("tiny", 0, {}) != study_run_name("tiny") and trial_name("tiny-0", 1, {}) != "tiny-0"


@pytest.mark.parametrize(("key", "spec", "message"), [
    ("train.lam", {"low": 0.3, "high": 0.3}, "the range 0.3..0.3 is empty (low must be below high)"),
    ("train.num_heads", {"low": 2, "high": 2}, "the range 2..2 is empty"),
    ("train.device", {"choices": ["cpu"]}, "not a searchable key"),
    ("train.out_dir", {"choices": ["results/a"]}, "not a searchable key"),
    ("train.resume", {"choices": ["never"]}, "not a searchable key"),
    ("train.amp", {"choices": [False]}, "not a searchable key"),
    ("train.lam", {"low": 0.1, "high": 0.5, "lgo": True}, "unknown key lgo"),
])
def test_a_dimension_refuses_an_empty_range_an_unsearched_key_and_an_unknown_option(tiny_params, key, spec,
                                                                                     message):
    from stages.search.space import _dimension

    assert _dimension("bad.yaml", "train.lam", {"low": 0.1, "high": 0.5, "log": True}, tiny_params).log
    with pytest.raises(CSRAError) as refused:
        _dimension("bad.yaml", key, spec, tiny_params)
    assert str(refused.value).startswith(f"bad.yaml: params.{key}: ") and message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_study_compares_every_data_setting_its_trials_trained_on_but_the_machines_own(tiny_params):
    from stages import train as train_stage
    from stages.params import load_params
    from stages.search.study import trained_from

    def trained(**overrides):
        return trained_from(load_params(train_stage.Params, tiny_params, overrides))

    base = trained()
    for key, value in {"data.dataset": "voc07", "data.val_fraction": 0.2, "data.val_seed": 1,
                       "data.bad_images": "fail", "train.lam": 0.3}.items():
        assert trained(**{key: value}) != base, key
    assert trained(**{"train.device": "cuda", "train.num_workers": 3, "train.out_dir": "elsewhere",
                      "data.prepared_dir": "elsewhere"}) == base


def test_the_best_trial_is_the_best_complete_one_never_a_pruned_one(capsys):
    from optuna.distributions import FloatDistribution
    from optuna.trial import create_trial

    from stages.search.records import best_trial, summary

    study = optuna.create_study(study_name="b", direction="maximize")
    dims = {"train.lam": FloatDistribution(0.0, 1.0)}
    study.add_trial(create_trial(params={"train.lam": 0.1}, distributions=dims, value=50.0,
                                 intermediate_values={1: 50.0}))
    study.add_trial(create_trial(state=TrialState.PRUNED, params={"train.lam": 0.2}, distributions=dims, value=90.0,
                                 intermediate_values={1: 40.0, 2: 90.0}))  # its value: its last epoch's mAP
    study.add_trial(create_trial(state=TrialState.FAIL, params={"train.lam": 0.3}, distributions=dims))
    assert best_trial(study).number == 0
    summary(study)
    assert "best: trial 0, val mAP 50.00" in capsys.readouterr().out


def test_a_promoted_trial_is_set_with_its_exact_values():
    """`dvc exp run -S` reads each override back (Hydra's parser) as the trial's value: same type, every digit."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from stages.search.records import override

    values = {"train.lr": 0.0012345678901234, "train.lam": 0.13125478963214, "train.weight_decay": 1.2345678e-05,
              "train.num_heads": 4, "train.tune_thresholds": False, "train.optimizer": "adamw"}
    parser = OverridesParser.create()
    for key, value in values.items():
        read = parser.parse_override(override(key, value))
        assert (read.key_or_group, read.value(), type(read.value())) == (key, value, type(value))


def test_a_trial_records_the_threads_it_runs_with_not_the_machines_cores(tmp_path):
    """Promotion runs the DVC experiment with the trial's threads (a CPU's sums depend on them): a trial records
    torch's thread count, whatever the cores (here a count no core count matches)."""
    from stages.common import machine
    from stages.search.space import Dimension, Space
    from stages.search.trials import Search, objective

    space = Space("s", "s.yaml", (Dimension("train.lam", choices=(0.1,)),), {"name": "random"}, {"name": "none"})
    search = Search("s", "unused", space, tmp_path / "missing.yaml", "parent", 1)  # no params: the trial fails
    study = optuna.create_study(direction="maximize")
    before, threads = torch.get_num_threads(), max(machine()[0], os.cpu_count() or 1) + 1
    torch.set_num_threads(threads)
    try:
        with pytest.raises(CSRAError):
            objective(search, 0, [-1], study.ask())
    finally:
        torch.set_num_threads(before)
    assert study.trials[0].user_attrs["threads"] == threads
