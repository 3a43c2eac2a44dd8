"""Shared by the stage commands: the user-error wrapper and typed option aliases."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from csra.errors import CSRAError
from stages.params import DEFAULT_PARAMS

ParamsOption = Annotated[Path, typer.Option("--params", help="The params file every default is read from.")]
DEFAULT_PARAMS_PATH = Path(DEFAULT_PARAMS)

# Model options of evaluate and demo: needed for an official state dict, checked against one of our checkpoints.
ModelOption = Annotated[str | None, typer.Option("--model", help="Backbone of an official state dict.")]
NumHeadsOption = Annotated[int | None, typer.Option(help="CSRA heads (read from the weights; checked).")]
LamOption = Annotated[float | None, typer.Option(help="λ of an official state dict.")]
ImgSizeOption = Annotated[int | None, typer.Option(help="Input size (default: the checkpoint's, or 448 for "
                                                        "ResNets and 224 for ViTs).")]


def one_line(error: CSRAError) -> str:
    """The error's message; one re-raised from a DataLoader worker carries the worker's traceback before it."""
    text = str(error).strip()
    if "Original Traceback" not in text:
        return text
    last = text.splitlines()[-1]
    prefix = f"{CSRAError.__module__}.{CSRAError.__name__}: "
    return last[len(prefix):] if last.startswith(prefix) else last


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a CSRAError into one 'error: …' line on stderr and exit status 1, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CSRAError as e:
            typer.echo(f"error: {one_line(e)}", err=True)
            raise typer.Exit(1) from None

    return wrapper
