"""`csra sync`: send the MLflow records that stages kept on disk while the tracking store did not answer
(stages/tracking/outbox.py), each run's in order, to the store they belong to; idempotent."""

from __future__ import annotations

import typer

from csra.errors import CSRAError
from stages.tracking.outbox import pending_runs, read_records, read_sent
from stages.tracking.store import connect, pending_root, sync_pending, tracking_uri


def run() -> None:
    """Send what is pending for this store (connecting sends it: store.connect); name what is left, and the runs
    kept for another store."""
    uri, root = tracking_uri(), pending_root()
    pending = {folder.name: len(read_records(folder)) - read_sent(folder) for folder in pending_runs(root, uri)}
    try:
        connect()  # the first connection of a process sends them; a later one (in a long process) does here
        sync_pending(uri)
    except CSRAError as e:
        left = {folder.name for folder in pending_runs(root, uri)}
        count = sum(n for name, n in pending.items() if name in left)
        raise CSRAError(f"{e}: {count} record(s) of {len(left)} run(s) stay in {root}") from None
    left = {folder.name for folder in pending_runs(root, uri)}
    for name, count in pending.items():
        typer.echo(f"run {name}: " + ("being sent by another process (it holds the lock)" if name in left
                                      else f"{count} record(s) sent to {uri}"))
    for folder in pending_runs(root):
        if folder.name not in pending:
            typer.echo(f"run {folder.name}: kept for another store; set MLFLOW_TRACKING_URI to it and run `csra sync`")
    if not pending:
        typer.echo(f"nothing to send to {uri}")
