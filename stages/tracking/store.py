"""The MLflow store: where it is (tracking_uri), the one connection a process makes to it (connect: a database or a
tracking server is checked first, in seconds), its experiments, and its failures and refusals as one line
(store_errors)."""

from __future__ import annotations

import fcntl
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.utils.credentials import get_default_host_creds, read_mlflow_creds
from mlflow.utils.rest_utils import http_request

from csra.errors import CSRAError, first_line
from stages.databases import CONNECT_S, check_database, database_problem, is_server_database, shown
from stages.tracking.outbox import PENDING, pending_runs, send_pending

DVC_TEMP_WORKSPACES = os.sep + os.path.join(".dvc", "tmp", "exps") + os.sep
_CONNECTED: set[str] = set()  # the stores this process has connected to: each once


def repo_root(cwd: Path | None = None) -> Path:
    """The repository root, seen through a DVC temporary experiment workspace if we run inside one."""
    cwd = (cwd or Path.cwd()).resolve()
    text = str(cwd) + os.sep
    if DVC_TEMP_WORKSPACES in text:
        return Path(text.split(DVC_TEMP_WORKSPACES)[0])
    return cwd


def pending_root() -> Path:
    """Where the records of runs that the store has not taken yet are kept (outbox.py): beside a SQLite store's file
    (the default store's: the repository root), else at the repository root; a DVC temporary workspace keeps them
    there too."""
    uri = tracking_uri()
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).resolve().parent / PENDING
    return repo_root() / PENDING


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to its file; other stores decide for themselves."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).resolve().parent / "mlartifacts").as_uri()
    return None


def connect() -> ModuleType:
    """mlflow, pointed at the store (tracking_uri); the first call of a process for a store connects to it, later
    ones reuse that. A new SQLite database gets its tables under a lock file beside it: the queue workers of a
    sweep that start together would otherwise both migrate it, and one would fail. The first connection also sends
    the records an earlier stage left for this store (sync_pending)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    warnings.filterwarnings("ignore", module="mlflow")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    if uri.startswith("sqlite:///") and uri not in _CONNECTED:
        database = Path(uri[len("sqlite:///"):])
        with store_errors():
            database.parent.mkdir(parents=True, exist_ok=True)
            with open(f"{database}.lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                mlflow.search_experiments(max_results=1)
    if uri not in _CONNECTED:
        if is_server_database(uri):
            check_database(uri, "MLflow tracking store (MLFLOW_TRACKING_URI)")
        elif uri.startswith(("http://", "https://")):
            check_server(uri)
        sync_pending(uri)
    _CONNECTED.add(uri)
    return mlflow


def check_server(uri: str) -> None:
    """A tracking server that does not answer, or whose artifact store (with proxied artifacts: its bucket) is
    missing or refuses the server's credentials, is one line, in seconds: MLflow's client would retry a refused
    connection for minutes, and a training would find the bucket missing only when it logs its first file."""
    creds = get_default_host_creds(uri)
    try:
        http_request(creds, "/health", "GET", max_retries=0, timeout=CONNECT_S)
        listing = http_request(creds, "/api/2.0/mlflow-artifacts/artifacts", "GET", max_retries=0,
                               timeout=CONNECT_S * 3, params={"path": ""})
    except Exception as e:  # refused, a host name that does not resolve, a timeout, a certificate not trusted
        text = str(e).lower()
        if "certificate verify failed" in text:
            detail = text.split("certificate verify failed: ", 1)[-1].split(" (_ssl")[0].split("'")[0].strip(" )")
            raise CSRAError(f"the MLflow server at {uri} shows a certificate this machine does not trust ({detail}): "
                            "set MLFLOW_TRACKING_SERVER_CERT_PATH to the certificate of the CA that signed it"
                            ) from None
        reason = ("connection refused" if "refused" in text else
                  "its host name is not known" if "name or service not known" in text or "resolve" in text else
                  f"no answer within {CONNECT_S} s" if "timed out" in text or "timeout" in text else
                  first_line(e, typed=True))
        raise CSRAError(f"the MLflow server at {uri} does not answer ({reason}): start it, or set "
                        "MLFLOW_TRACKING_URI to its address") from None
    try:
        answer = listing.json()
    except ValueError:  # not MLflow's JSON: a server that does not serve artifacts, or not an MLflow server
        answer = {}
    message = str(answer.get("message", ""))
    if listing.status_code == 200 or not message.startswith("Failed to list artifacts in"):
        if listing.status_code == 401:  # the server's users, not its artifact store, refused
            raise refused(401, "read the artifact store")
        return
    store = message[len("Failed to list artifacts in "):].split(": ", 1)[0]
    fix = ("create the bucket, or fix the server's --artifacts-destination" if listing.status_code == 404 else
           "fix the credentials the server runs with (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or its IAM role) "
           "and restart it")
    raise CSRAError(f"the MLflow server at {uri} cannot use its artifact store {store} "
                    f"({message.split(': ', 1)[-1]}): {fix}")


def sync_pending(uri: str | None = None) -> list[tuple[dict, int]]:
    """Send the records that stages left unsent (outbox.py) — those for the store at uri, or all — each run's in
    order; [(the run's run.json, how many records were sent)], a run another process is sending left out. A store
    that does not answer is one line (store_errors)."""
    done = []
    for folder in pending_runs(pending_root(), uri):
        with store_errors("send the records kept while it was away"):
            sent = send_pending(folder)
        if sent is not None:
            done.append(sent)
    return done


def experiment_of(mlflow: ModuleType, name: str) -> str:
    """The experiment's id; a new one is a model-training experiment, so the UI opens on its runs table."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_location(mlflow.get_tracking_uri()),
                                    tags={"mlflow.experimentKind": "custom_model_development"})


REFUSALS = {"UNAUTHENTICATED": 401, "CUSTOMER_UNAUTHORIZED": 401, "PERMISSION_DENIED": 403}


def refusal(error: BaseException) -> int | None:
    """401 when the tracking server did not know who asked (no or wrong credentials), 403 when it knew and would
    not let them (a READ permission where the call needs EDIT), else None. The REST calls raise an MlflowException
    with the error code; the proxied artifact transfers a requests HTTPError with the response."""
    if isinstance(error, MlflowException):
        return REFUSALS.get(error.error_code)
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if status in (401, 403) else None


def refused(status: int, doing: str) -> CSRAError:
    """The one line for a server's refusal (see refusal): who asked, as MLflow's client sent it (the environment
    variables MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, else ~/.mlflow/credentials), and what for."""
    user, server = read_mlflow_creds().username, f"the MLflow server at {tracking_uri()}"
    if status == 403:
        return CSRAError(f"{server} refused user '{user}' (403 permission denied): the user may not {doing}; an "
                         "admin of the server grants EDIT on the experiment and the registered model")
    if user:
        return CSRAError(f"{server} refused user '{user}' (401 unauthenticated): check MLFLOW_TRACKING_USERNAME "
                         "and MLFLOW_TRACKING_PASSWORD")
    return CSRAError(f"{server} refused the request (401 unauthenticated): set MLFLOW_TRACKING_USERNAME and "
                     "MLFLOW_TRACKING_PASSWORD to a user of the server")


@contextmanager
def store_errors(doing: str = "make this call") -> Iterator[None]:
    """A store that cannot be reached (a team server down, a database locked) is one line, not a traceback; so is
    a team server that refuses the client (doing: what the call was for, which a 403 names)."""
    try:
        yield
    except CSRAError:
        raise
    except Exception as e:
        status = refusal(e)
        if status is not None:
            raise refused(status, doing) from None
        uri = tracking_uri()
        if "sqlalchemy" in type(e).__module__ and is_server_database(uri):
            raise CSRAError(database_problem(uri, "MLflow tracking store (MLFLOW_TRACKING_URI)", e)) from None
        if isinstance(e, (MlflowException, ConnectionError, OSError)) or "sqlalchemy" in type(e).__module__:
            raise CSRAError(f"MLflow tracking store {shown(uri)}: {first_line(e)}") from None
        raise


