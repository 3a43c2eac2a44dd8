"""A study's records. In MLflow: one parent run per study, `study <name>` (its space, the best trial so far), every
trial a run nested under it, `<name>-<number> <values>` (study.py makes those), whose tag optuna.state says
complete, pruned or failed. On the console: the table of trials. In DVC: the best trial as the experiment
`<name>-best` — `dvc exp run --temp -n <name>-best -S key=value …` with exactly the trial's values — which re-runs
the pipeline on them (train's run lands in MLflow beside the baseline's) and must reproduce the trial's best
validation mAP; `dvc exp show` lists it beside the baseline.

The parent run's status says what is true of the study: it ends (FINISHED; FAILED or KILLED when the invocation
that ends last failed or was interrupted) only when no trial of the study runs; while trials run, in any
invocation, it is RUNNING and its tag running_trials names them (settle_parent)."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import typer
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from csra.errors import CSRAError, first_line
from stages.databases import shown
from stages.search.space import Space
from stages.tracking import study_runs
from stages.tracking.execution import experiment_ref, git_commit, run_tags
from stages.tracking.runs import NOTE
from stages.tracking.store import store_errors, tracking_uri

DVC = [sys.executable, "-m", "dvc"]  # DVC, and the stages it runs (`python -m stages.cli`), in this environment
STATE = "optuna.state"  # a trial run's tag: complete, pruned or failed
PARENT = "mlflow_parent_run_id"  # the study's user attribute naming its MLflow parent run
PARENT_WAIT = 60  # s an invocation waits for the one that created the study to name its MLflow parent run
RUNNING_TRIALS = "running_trials"  # the parent run's tag: the study's trials running now, "3, 5" ("" when none)
SETTLE_TRIES = 5  # times settle_parent writes before it leaves the next write to a later trial or invocation


def shown_value(value: Any) -> str:
    """A trial's value as a reader takes it in: a float to 3 significant digits (lr 0.00123, λ 0.131), else as is.
    The DVC experiment and Optuna's storage keep the exact value."""
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def shown_values(values: dict[str, Any], sep: str = " ") -> str:
    """key=value, … of a trial's values, shown_value each; sep between key and value."""
    return ", ".join(f"{k}{sep}{shown_value(v)}" for k, v in values.items())


def trial_name(study: str, number: int, values: dict[str, Any]) -> str:
    """A trial's run name: the study, its number and its values (train.lam=0.131 as lam=0.131): never the name of
    the study's run (study_run_name) or of its promoted experiment's."""
    return f"{study}-{number} " + " ".join(f"{k.rsplit('.', 1)[-1]}={shown_value(v)}" for k, v in values.items())


def study_run_name(study: str) -> str:
    """The name of the study's parent run."""
    return f"study {study}"


def experiment_name(study: str) -> str:
    """The DVC experiment the study's best trial becomes (and its MLflow runs' name ends with)."""
    return f"{study}-best"


def best_value(trial: FrozenTrial) -> float:
    """A trial's best validation mAP: its value, or for one stopped early its best epoch so far (NaN: none)."""
    if trial.state.name == "COMPLETE":
        return trial.value  # (a pruned trial's value is its last epoch's)
    return max(trial.intermediate_values.values(), default=math.nan)


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's complete trials (not pruned, failed or running)."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The study's best complete trial (by best validation mAP), None while none is complete."""
    complete = complete_trials(study)
    return max(complete, key=lambda t: t.value) if complete else None


def summary(study: optuna.Study) -> None:
    """Every trial of the study: number, state, best val mAP, host and values; then the best."""
    trials = study.get_trials(deepcopy=False)
    keys = sorted({k for t in trials for k in t.params})
    typer.echo(f"\nstudy {study.study_name}: {len(trials)} trial(s)")
    widths = {k: max(len(k), *(len(shown_value(t.params[k])) for t in trials if k in t.params)) for k in keys}
    typer.echo(f"{'trial':>5}  {'state':<8}  {'val mAP':>7}  {'epochs':>6}  {'host':<12}  "
               + "  ".join(f"{k:<{widths[k]}}" for k in keys).rstrip())
    for t in trials:
        value = best_value(t)
        typer.echo((f"{t.number:>5}  {t.state.name.lower():<8}  {'' if math.isnan(value) else f'{value:.2f}':>7}  "
                    f"{len(t.intermediate_values):>6}  {str(t.user_attrs.get('host', ''))[:12]:<12}  "
                    + "  ".join(f"{shown_value(t.params[k]) if k in t.params else '':<{widths[k]}}"
                                for k in keys)).rstrip())
    best = best_trial(study)
    if best is not None:
        typer.echo(f"best: trial {best.number}, val mAP {best.value:.2f}")


def override(key: str, value: Any) -> str:
    """key=value as a Hydra override of `dvc exp run -S` reads it back: the same type and value."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = repr(value)
    else:
        text = json.dumps(str(value)) if any(c in str(value) for c in " ,=[]{}()'\"") else str(value)
    return f"{key}={text}"


def experiment_metrics(root: Path, ref: str, metrics: str) -> dict[str, Any] | None:
    """The train metrics file (its path in the repository) that DVC committed under an experiment's git ref; None
    while there is no such experiment."""
    out = subprocess.run(["git", "show", f"{ref}:{metrics}"], cwd=root, capture_output=True, text=True)
    return json.loads(out.stdout) if out.returncode == 0 else None


def promote_best(study: optuna.Study, root: Path, out_dir: str) -> None:
    """Make the study's best complete trial the DVC experiment <study>-best (experiment_name; replacing an older one of
    that name), and check that it reproduces the trial's best validation mAP."""
    best = best_trial(study)
    if best is None:
        raise CSRAError(f"study {study.study_name} has no complete trial to promote yet")
    commit = git_commit()
    if not (root / ".dvc").is_dir() or commit is None:
        raise CSRAError(f"{root} is not a DVC project in a git repository with a commit: the best trial "
                        f"({best.number}) cannot become a DVC experiment here")
    sets = [override(k, v) for k, v in sorted(best.params.items())]
    name, metrics_file = experiment_name(study.study_name), f"{Path(out_dir).as_posix()}/metrics.json"  # dvc.yaml's
    ref = experiment_ref(commit, name)
    if experiment_metrics(root, ref, metrics_file) is not None:  # an earlier best of this study, on this commit
        subprocess.run([*DVC, "exp", "remove", name], cwd=root, capture_output=True, text=True)
    command = [*DVC, "exp", "run", "--temp", "-n", name, *(x for s in sets for x in ("-S", s))]
    typer.echo(f"\npromoting trial {best.number} (val mAP {best.value:.4f}): dvc exp run --temp -n {name} "
               + " ".join(f"-S {s}" for s in sets))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    if "threads" in best.user_attrs and "OMP_NUM_THREADS" not in os.environ:  # a CPU's sums depend on them
        env["OMP_NUM_THREADS"] = str(best.user_attrs["threads"])
    if subprocess.run(command, cwd=root, env=env).returncode != 0:
        raise CSRAError(f"`dvc exp run` of the best trial ({best.number}) failed; the study is unchanged, and "
                        f"`csra search --study {study.study_name} --promote` tries again")
    found = (experiment_metrics(root, ref, metrics_file) or {}).get("best_val_mAP")
    parent = study.user_attrs.get(PARENT)
    if parent:
        study_runs.set_tags(parent, {"dvc.experiment": name, "dvc.experiment_trial": str(best.number)})
    if found is None:
        raise CSRAError(f"DVC experiment {name} ran but its {metrics_file} holds no best_val_mAP")
    same = abs(found - best.value) <= 1e-9
    typer.echo(f"DVC experiment {name}: best val mAP {found:.4f} "
               + ("= the trial's" if same else f"≠ the trial's {best.value:.4f}")
               + f" (dvc exp show; the names of its MLflow runs end with {name})")
    if not same:
        raise CSRAError(f"DVC experiment {name} did not reproduce trial {best.number}: best val mAP {found:.6f}, "
                        f"the trial's {best.value:.6f} (a different machine, thread count or code?)")


def parent_run(study: optuna.Study, created: bool, experiment: str, space: Space, storage: str,
               storage_object: BaseStorage) -> str:
    """The study's MLflow parent run: made by the invocation that created the study, found by every other."""
    with store_errors(f"log runs to the experiment '{experiment}'"):
        if created:
            params = {**{f"space.{k}": v for k, v in space.record()["params"].items()}, "space": space.name,
                      "sampler": str(space.sampler), "pruner": str(space.pruner)}
            tags = {**run_tags(), "optuna.study": study.study_name, "optuna.storage": shown(storage),
                    "optuna.space": space.name, RUNNING_TRIALS: "", NOTE: parent_note(study, [])}
            run_id = study_runs.create_parent(experiment, study_run_name(study.study_name), tags, params,
                                              space.record(), "search/space.json")
            study.set_user_attr(PARENT, run_id)
            return run_id
        deadline = time.monotonic() + PARENT_WAIT
        while PARENT not in study.user_attrs:  # its creator is making it now
            if time.monotonic() > deadline:
                raise CSRAError(f"study {study.study_name} has no MLflow parent run (its creator stopped before "
                                "making one): name a new study")
            time.sleep(1)
            study = optuna.load_study(study_name=study.study_name, storage=storage_object)
        run_id = study.user_attrs[PARENT]
        if not study_runs.reopen(run_id):
            raise CSRAError(f"study {study.study_name}: its MLflow parent run {run_id} is not in "
                            f"{tracking_uri()}; point MLFLOW_TRACKING_URI at the store the study started "
                            "with")
    return run_id


def stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna found trial's worker silent past the grace period and marked it failed: so is its MLflow run."""
    if fail_run(trial):
        logging.getLogger("csra").warning("warning: trial %d of %s stopped beating (its worker died): marked failed",
                                          trial.number, trial.user_attrs.get("host", "?"))


def running_trials(study: optuna.Study) -> list[int]:
    """The numbers of the study's trials running now, in any invocation. First, on a storage with heartbeats, a
    trial whose worker has been silent past the grace period is marked failed (stale_trial), as a worker does before
    it starts a trial; a trial whose worker died less than that ago, or died on a journal file (no heartbeat),
    still runs as far as the study knows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def numbers(trials: list[int]) -> str:
    """Trial numbers as the tag running_trials and the console show them: "3, 5"."""
    return ", ".join(map(str, trials))


def trials_named(trials: list[int]) -> str:
    """ "trial 3", or "trials 3, 5": the running trials in a sentence."""
    return f"trial{'s' if len(trials) > 1 else ''} {numbers(trials)}"


def parent_note(study: optuna.Study, running: list[int]) -> str:
    """The parent run's description: the best trial so far (before any, the study and its space), then the trials
    running now."""
    best = best_trial(study)
    if best is None:
        space = (study.user_attrs.get("space") or {}).get("name", "?")
        note = f"study: Optuna study {study.study_name} over space {space}, trials nested under this run"
    else:
        note = (f"study: Optuna study {study.study_name}, best of {len(complete_trials(study))} complete trials: "
                f"trial {best.number}, val mAP {best.value:.2f}, {shown_values(best.params, '=')}")
    if running:
        note += f"; running: {trials_named(running)}"
    return note


def settle_parent(parent: str, study: optuna.Study, status: str | None) -> list[int]:
    """Make the parent run say which of the study's trials run now (the tag running_trials, a clause of its
    description) and set its status: RUNNING while any runs, whatever status asks; else status (RUNNING,
    FINISHED, FAILED, KILLED; None: as it is). Workers of several invocations write it: each reads the study again
    after writing, and writes again until the two agree, so that the last to write writes what is true. The
    numbers of the trials running."""
    running = running_trials(study)
    for _ in range(SETTLE_TRIES):
        study_runs.set_tags(parent, {RUNNING_TRIALS: numbers(running), NOTE: parent_note(study, running)})
        if status == "RUNNING" or (status is not None and running):
            study_runs.reopen(parent)
        elif status is not None:
            study_runs.end(parent, status)
        again = running_trials(study)
        if again == running:
            break
        running = again
    return running


@contextmanager
def parent_writes(parent: str) -> Iterator[None]:
    """A write to the study's MLflow run that fails is a warning: the study goes on, a later write tries again."""
    try:
        yield
    except Exception as e:
        logging.getLogger("csra").warning("warning: the study's MLflow run %s was not updated: %s", parent,
                                          first_line(e))


def trial_started(parent: str, study: optuna.Study) -> None:
    """When a trial starts: the parent run is RUNNING (again, if another invocation had just closed it) and names
    it among the running trials."""
    with parent_writes(parent):
        settle_parent(parent, study, "RUNNING")


def update_parent(parent: str, study: optuna.Study, trial: FrozenTrial) -> None:
    """After each trial: the parent run names the best trial so far, its val mAP and params, and the trials still
    running."""
    with parent_writes(parent):
        best = best_trial(study)
        if best is not None:
            study_runs.set_tags(parent, {"best_trial": str(best.number),
                                         "best_run_id": best.user_attrs.get("mlflow_run_id", ""),
                                         "best_params": shown_values(best.params, "=")})
            study_runs.log_metric(parent, "best_val_mAP", best.value, len(complete_trials(study)))
        settle_parent(parent, study, None)


def close_parent(parent: str, study: optuna.Study, status: str) -> list[int]:
    """When an invocation ends (status: FINISHED, or FAILED or KILLED when it failed or was interrupted): the parent
    run ends with that status if no trial of the study runs; else it stays RUNNING, naming the running trials
    (which are other workers': this invocation's own ended or were marked failed), and the last of their
    invocations to end closes it. The numbers of the trials running."""
    running = None
    with parent_writes(parent):
        running = settle_parent(parent, study, status)
        if running:
            typer.echo(f"study {study.study_name}: its MLflow run stays open (RUNNING) for {trials_named(running)} "
                       "of other workers; the last worker to end closes it")
    return running if running is not None else running_trials(study)  # the run's write failed: the study says


def mark_failed(storage: BaseStorage, name: str, number: int, why: str) -> bool:
    """A trial of study name whose worker died: failed in the study and in MLflow, if still running in the study
    (a trial that ended, or that Optuna failed on an interrupt, keeps its records); whether it was."""
    study = optuna.load_study(study_name=name, storage=storage)
    trial = next(t for t in study.get_trials(deepcopy=False) if t.number == number)
    if trial.state != TrialState.RUNNING:
        return False
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), number)
    storage.set_trial_system_attr(trial_id, "fail_reason", why)
    storage.set_trial_state_values(trial_id, TrialState.FAIL)
    fail_run(trial)
    return True


def fail_run(trial: FrozenTrial) -> bool:
    """The trial's MLflow run ends as failed (tag and status); False when it has none."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        study_runs.set_tags(run_id, {STATE: "failed"})
        study_runs.end(run_id, "FAILED")
    return bool(run_id)
