"""`csra search`: an Optuna study over a space of train's params (space.py). Each trial is a training run of
`csra train` — the same setup and training function (stages/train.py: train_recorded) — on params.yaml with the
trial's values, scored by its best validation mAP on the held-out selection split; its pruner may stop it at the end
of an epoch.

The study lives in Optuna's storage: by default optuna.db (SQLite, git-ignored) at the repository root; with
--storage, any database URL (postgresql://…) or a journal file (a path; on a shared file system for many machines)
that every worker of the study shares, so that a later invocation, on any machine, continues it. Optuna hands each
trial to one worker (trials.py; the storage: storage.py). In MLflow the study is one parent run and every trial a
run nested under it; an invocation that ends while trials of other workers run leaves the parent run RUNNING,
naming them, and the last to end closes it and makes the best trial the DVC experiment <study>-best (records.py)."""


from __future__ import annotations

from pathlib import Path

import optuna
import typer

from csra.errors import CSRAError
from csra.settings import LOCAL, with_role
from stages import train as train_stage
from stages.databases import shown
from stages.params import load_params
from stages.search.records import best_trial, close_parent, parent_run, promote_best, summary, trials_named
from stages.search.space import Space, load_space
from stages.search.storage import DEFAULT_STORAGE, GRACE, open_storage, open_study, storage_errors
from stages.search.trials import Search, Workers
from stages.tracking.store import repo_root

DEFAULT_SPACE = "paper"


def run(params_file: Path, study_name: str, storage_url: str | None, space_name: str | None, trials: int,
        jobs: int, promote: bool | None, grace: int = GRACE) -> None:
    """Run `trials` trials of the study over `jobs` workers here, then (promote not False) make its best trial a DVC
    experiment; promote True with no trials: only that."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    params = load_params(train_stage.Params, params_file)  # the base every trial changes
    if params.data.selection != "val":
        raise CSRAError(f"{params_file}: data.selection is {params.data.selection}: a search scores its trials on the "
                        "held-out selection split, never on the test split; set data.selection: val")
    root = repo_root()
    space = load_space(root / "conf", space_name, params_file) if space_name else None  # checked whole first
    url = storage_url or f"sqlite:///{root / DEFAULT_STORAGE}"
    storage = open_storage(url, grace)
    with storage_errors(url):
        known = {s.study_name: s for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    recorded = known[study_name].user_attrs.get("space") if study_name in known else None
    name = space_name or (recorded["name"] if recorded else DEFAULT_SPACE)
    if trials == 0 and promote:
        if study_name not in known:
            raise CSRAError(f"no study {study_name} in {shown(url)}")
        with storage_errors(url):
            study = optuna.load_study(study_name=study_name, storage=storage)
        promote_best(study, root, params.train.out_dir)
        return
    space = space or load_space(root / "conf", name, params_file)
    base = trained_from(params)
    if study_name in known:
        check_continued(known[study_name], name, space, base, params_file)
    with storage_errors(url):
        study, created = open_study(study_name, storage, space)
        if created:
            study.set_user_attr("space", space.record())
            study.set_user_attr("params", base)
    typer.echo(f"study {study_name} ({'new' if created else f'{len(study.trials)} trials so far'}) in {shown(url)}, "
               f"space {space.name}: {trials} trial(s) over {jobs} worker(s) here")
    workers = Workers(jobs, trials, storage)  # forked now, before this process opens MLflow
    try:
        parent = parent_run(study, created, params.tracking.experiment, space, url, storage)
    except BaseException:
        workers.stop()
        raise
    search = Search(study_name, url, space, params_file.resolve(), parent, jobs, grace)
    try:
        workers.run(search)
    except BaseException as e:  # an interrupt (KeyboardInterrupt or a subclass) or a failure of this invocation
        close_parent(parent, study, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    summary(study)
    running = close_parent(parent, study, "FINISHED")
    if promote is False or best_trial(study) is None:
        return
    if running and promote is None:  # the invocation that ends last promotes, once: the best of every trial
        typer.echo(f"study {study_name}: the best trial is promoted by the last invocation to end "
                   f"({trials_named(running)} of other workers still run), or by "
                   f"`csra search --study {study_name} --promote --trials 0`")
        return
    promote_best(study, root, params.train.out_dir)


def check_continued(began: optuna.study.StudySummary, name: str, space: Space, base: dict[str, object],
                    params_file: Path) -> None:
    """A study continued searches the space (conf/search/<name>.yaml) and trains from the params (base) it began
    with: its trials must be comparable."""
    recorded, study_name = began.user_attrs.get("space"), began.study_name
    if recorded is not None and recorded != space.record():
        raise CSRAError(f"study {study_name} searches space {recorded['name']} as it was when the study began; "
                        f"conf/search/{name}.yaml differs now: continue with that space or name a new study")
    then = began.user_attrs.get("params")
    if then is not None and then != base:
        changed = sorted(k for k in set(then) | set(base) if then.get(k) != base.get(k))
        raise CSRAError(f"study {study_name}'s trials trained from other params: {params_file} differs in "
                        f"{', '.join(f'{k} ({then.get(k)!r} then, {base.get(k)!r} now)' for k in changed[:4])}; "
                        "trials of one study must be comparable: restore them or name a new study")


def trained_from(params: train_stage.Params) -> dict[str, object]:
    """What every trial of a study trains from, whatever machine runs it: train's params but the machine's own
    (the settings whose role is LOCAL: device, loader processes, where things go)."""
    local = {f"{group}.{name}" for group, kind in params.groups().items() for name in with_role(kind, LOCAL)}
    return {k: v for k, v in params.flat().items() if k.startswith(("data.", "train.")) and k not in local}
