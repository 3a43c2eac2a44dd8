"""`csra prepare`: raw dataset (or the generated built-in one) → official annotation JSON + classes.txt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csra.data.check import check_prepared
from csra.data.sources import SOURCES, get_source, prepare_dataset
from csra.data.synthetic import SyntheticSpec
from csra.errors import CSRAError
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors
from stages.params import Params


def synthetic_spec(params: Params) -> SyntheticSpec:
    return SyntheticSpec(
        **{
            name: params.get(f"prepare.synthetic.{name}", int)
            for name in ("num_trainval", "num_test", "num_demo", "width", "height", "seed")
        }
    )


@user_errors
def prepare(
    dataset: Annotated[str | None, typer.Argument(help=f"One of {', '.join(SOURCES)} (default data.dataset).")] = None,
    data_path: Annotated[Path | None, typer.Option(help="Raw dataset folder (default data.raw_path).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (default data.prepared_dir).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then open every image and check the written files; "
                                                        "exit 1 on missing or unreadable images.")] = False,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Convert a dataset to the official CSRA annotation JSON; `synthetic` generates the built-in one first."""
    params = Params.load(params_file).override(
        data__dataset=dataset, data__raw_path=str(data_path) if data_path else None,
        data__prepared_dir=str(out_dir) if out_dir else None,
    )
    name = params.get("data.dataset", str)
    source = get_source(name)
    out = Path(params.get("data.prepared_dir", str))
    raw = params.get("data.raw_path", str)
    spec = synthetic_spec(params) if name == "synthetic" else None
    classes = prepare_dataset(name, out, raw_path=raw, synthetic=spec)
    typer.echo(f"{name}: {len(classes)} classes → {out / source.train_file}, {out / source.test_file}")
    if check:
        found = check_prepared(out, source.train_file, source.test_file, source.label_format)
        for warning in found.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if found.errors:
            raise CSRAError("; ".join(found.errors))
        typer.echo("check: every image readable, targets and class counts consistent")
