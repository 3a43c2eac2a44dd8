"""`csra prepare`: a raw dataset (or the generated built-in one) → the official annotation JSON + classes.txt."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from csra.data.datasets import DATASETS
from stages.common import DEFAULT_PARAMS_PATH, ParamsOption, user_errors

RAW_ROOT = Path("data/raw")  # the folder the prepare stage depends on (dvc.yaml): raw datasets live under it


@user_errors
def prepare(
    dataset: Annotated[str | None, typer.Argument(help=f"One of {', '.join(DATASETS)} (default data.dataset).")] = None,
    data_path: Annotated[Path | None, typer.Option(help="Raw dataset folder (default data.raw_path).")] = None,
    out_dir: Annotated[Path | None, typer.Option(help="Output folder (default data.prepared_dir).")] = None,
    check: Annotated[bool, typer.Option("--check", help="Then open every image and check the written files; "
                                                        "exit 1 on missing or unreadable images.")] = False,
    params_file: ParamsOption = DEFAULT_PARAMS_PATH,
) -> None:
    """Convert a dataset to the official CSRA annotation JSON; `synthetic` generates the built-in one first."""
    from stages.params import load_params

    params = load_params(params_file, data__dataset=dataset, data__raw_path=str(data_path) if data_path else None,
                         data__prepared_dir=str(out_dir) if out_dir else None)
    from csra.data.check import check_prepared
    from csra.data.datasets import get_dataset
    from csra.data.prepared import prepare_dataset
    from csra.errors import CSRAError

    entry, out = get_dataset(params.data.dataset), Path(params.data.prepared_dir)
    raw = params.data.raw_path
    if raw and entry.converter and not Path(raw).resolve().is_relative_to(RAW_ROOT.resolve()):
        typer.echo(f"warning: data.raw_path {raw} is outside {RAW_ROOT}/, which DVC tracks for the prepare stage: a "
                   f"change to its files re-runs nothing (see {RAW_ROOT}/README.md)", err=True)
    classes = prepare_dataset(entry.name, out, raw_path=params.data.raw_path, synthetic=params.prepare.synthetic)
    typer.echo(f"{entry.name}: {len(classes)} classes → {out / entry.train_file}, {out / entry.test_file}")
    if check:
        found = check_prepared(out, entry.train_file, entry.test_file, entry.label_format)
        for warning in found.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if found.errors:
            raise CSRAError("; ".join(found.errors))
        typer.echo("check: every image readable, targets and class counts consistent")
