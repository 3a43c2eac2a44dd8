"""Which versions a registered model gets and which one is its champion: the registered model's name (one per
dataset by default), export.register's policy, the alias `champion` on the best version among those evaluated on
the same test data (never moved to a version evaluated on other data), and each version's description. MLflow
code, beside registry.py (what a version holds) and runs.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from csra.evaluate.metrics import best_first, better
from stages.tracking.registry import Evaluation, provenance, version_metric
from stages.tracking.runs import TEST_DIGEST, TEST_FILE, Recorder
from stages.tracking.store import refusal, store_errors

CHAMPION = "champion"
AUTO = "auto"  # export.registered_model: auto names one registered model per dataset
MODEL_DESCRIPTION = ("CSRA multi-label image classifier (class-specific residual attention, ICCV 2021), registered "
                     "by `csra export`. Each version takes photo files (base64 strings in a column `image`) or uint8 "
                     "RGB pixels and answers the sigmoid score of every class; its metadata holds the class names, "
                     "the preprocessing and the per-class thresholds. The alias `champion` is the best version by "
                     "export.champion_metric among those evaluated on the same test data; it never moves to a "
                     "version evaluated on other data.")


def model_name(setting: str, dataset: str) -> str:
    """The registered model export.registered_model names: the name given, or for auto csra-<data.dataset>, so
    that versions trained on different datasets never share a model (nor its champion)."""
    return f"csra-{dataset}" if setting == AUTO else setting


def _champion(client: MlflowClient, name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as e:  # no such model, or no champion yet; a server's refusal is the refusal
        if refusal(e) is not None:
            raise
        return None


def best_version(scored: list[tuple[float, Any]], metric: str) -> Any | None:
    """The best of (value of metric, version) pairs in the metric's direction (the older version on a tie)."""
    return min(scored, key=lambda pair: (best_first(metric, pair[0]), int(pair[1].version)), default=(None, None))[1]


def _best(client: MlflowClient, name: str, digest: str, metric: str) -> ModelVersion | None:
    """The best version by metric among those evaluated on the test data of digest (the older one on a tie)."""
    scored = [(value, v) for v in client.search_model_versions(f"name = '{name}'")
              if v.tags.get(TEST_DIGEST) == digest and (value := version_metric(v, metric)) is not None]
    return best_version(scored, metric)


def _decision(client: MlflowClient, name: str, policy: str, metric: str, candidate: Evaluation | None) -> str | None:
    """None when a new version is to be registered, else why not. `better` compares with the best version
    evaluated on the same test data (by its digest); versions evaluated on other data are not compared."""
    if policy == "always":
        return None
    if policy == "never":
        return "not registered (export.register: never)"
    if candidate is None or metric not in candidate.metrics:
        return f"not registered: this execution logged no {metric} (evaluate logs it; export.register: always " \
               "registers anyway)"
    best = _best(client, name, candidate.digest, metric)
    if best is None or better(metric, candidate.metrics[metric], version_metric(best, metric)):
        return None
    return f"not registered: {metric} {candidate.metrics[metric]:.2f} does not beat version {best.version} " \
           f"({version_metric(best, metric):.2f}), the best on this test data"


def _stays(version: ModelVersion, candidate: Evaluation) -> str:
    """Why the champion did not move: it was evaluated on other test data than this export's."""
    tested = version.tags.get(TEST_DIGEST)
    where = (f"{Path(version.tags.get(TEST_FILE, '?')).name}, digest {tested[:8]}" if tested
             else "no recorded test data")
    return (f"champion stays on version {version.version}, evaluated on other test data ({where}; this model: "
            f"{Path(candidate.file).name}, digest {candidate.digest[:8]}): give this data a registered model of its "
            f"own (export.registered_model: {AUTO} names csra-<data.dataset>), or move the alias by hand")


def elect_champion(client: MlflowClient, name: str, candidate: Evaluation,
                   metric: str) -> tuple[str | None, str | None]:
    """(the champion's version, or None; why it stayed, or None). The alias champion goes to the best version by
    metric among those evaluated on the candidate's test data (its digest) — unless it is on a version evaluated
    on other test data, which it never leaves for this one. Read again after moving it, so that a concurrent
    export cannot leave it on a worse version."""
    best = None
    for _ in range(3):
        current = _champion(client, name)
        if current is not None and current.tags.get(TEST_DIGEST) != candidate.digest:
            return str(current.version), _stays(current, candidate)
        best = _best(client, name, candidate.digest, metric)
        if best is None:
            return (str(current.version) if current is not None else None), None
        if current is not None and current.version == best.version:
            break
        client.set_registered_model_alias(name, CHAMPION, best.version)
    return str(best.version), None


def describe(dataset: str, summary: str, name: str, version: str, candidate: Evaluation | None, metric: str) -> str:
    """A version's description, which the UI's column cuts short: first its dataset and test score (on which file,
    by digest), then what the model is (summary), then the command that serves it."""
    scored = (f"test {metric} {candidate.metrics[metric]:.2f} ({Path(candidate.file).name}, digest "
              f"{candidate.digest[:8]})" if candidate and metric in candidate.metrics else "not evaluated")
    return (f"{dataset}, {scored}: {summary}. Serve it: mlflow models serve -m models:/{name}/{version} "
            "--env-manager local --port 5001")


def register(recorder: Recorder, model_id: str, name: str, policy: str, metric: str, dataset: str, summary: str,
             candidate: Evaluation | None) -> dict[str, Any]:
    """Register the logged model as a version of name as export.register says (never twice the same logged
    model), tagged with its metrics (candidate: the execution's evaluation, see registry.evaluation), test
    file, data digest, DVC experiment and commit, described (dataset: what it was evaluated on; summary: what the
    model is); then elect the champion. Returns what the run records as export/registration.json."""
    with store_errors(f"register versions of the model '{name}' or move its alias {CHAMPION}"):
        client = MlflowClient()
        mine = [v for v in client.search_model_versions(f"name = '{name}'") if v.source == f"models:/{model_id}"]
        reason = "already registered" if mine else _decision(client, name, policy, metric, candidate)
        version = mine[0].version if mine else None
        if reason is None:
            tags = {**provenance(recorder), **(candidate.tags() if candidate else {}), "run_id": recorder.run_id}
            version = mlflow.register_model(f"models:/{model_id}", name, tags=tags).version
            client.update_model_version(name, version, description=describe(dataset, summary, name, str(version),
                                                                             candidate, metric))
            if not client.get_registered_model(name).description:
                client.update_registered_model(name, description=MODEL_DESCRIPTION)
            reason = "registered"
        champion, stays = elect_champion(client, name, candidate, metric) if candidate else (None, None)
    return {"name": name, "version": str(version) if version else None,
            "model_uri": f"models:/{name}/{version}" if version else f"models:/{model_id}",
            "logged_model": f"models:/{model_id}", "registered": reason,
            "champion": champion, "champion_stays": stays, "metric": metric}
