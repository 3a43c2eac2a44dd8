"""The `csra` entry point: prepare, train, evaluate, demo and export, one command per DVC stage. Importing it loads
Typer and the command signatures only: each command imports what it needs when it runs."""

from __future__ import annotations

import typer

from stages.demo import demo
from stages.evaluate import evaluate
from stages.export import export
from stages.prepare import prepare
from stages.train import train

app = typer.Typer(
    help="CSRA (residual attention) for multi-label image recognition: the stages of the DVC pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(prepare)
app.command()(train)
app.command()(evaluate)
app.command()(demo)
app.command()(export)


def main() -> None:
    app()


if __name__ == "__main__":  # `torchrun … -m stages.cli train`
    main()
