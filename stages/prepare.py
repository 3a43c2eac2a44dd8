"""`csra prepare`: a raw dataset (or the generated built-in one) → the official annotation JSON + classes.txt, and
the digest of what each split's readers read."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from csra.data.check import check_prepared
from csra.data.datasets import get_dataset
from csra.data.prepared import check_source, prepare_dataset
from csra.data.synthetic import SyntheticSpec
from csra.errors import CSRAError
from csra.settings import setting
from stages.params import Group, RawData, StageParams, load_params

RAW_ROOT = Path("data/raw")  # the folder the prepare stage depends on (dvc.yaml): raw datasets live under it


@dataclass(frozen=True)
class PrepareParams(Group):
    synthetic: SyntheticSpec = setting()


@dataclass(frozen=True)
class Params(StageParams):
    """What prepare reads of params.yaml."""

    data: RawData
    prepare: PrepareParams


def run(params_file: Path, overrides: dict[str, object], check: bool) -> None:
    params = load_params(Params, params_file, overrides)
    entry, out = get_dataset(params.data.dataset), Path(params.data.prepared_dir)
    raw = params.data.raw_path
    check_source(entry, raw, params.prepare.synthetic)
    if raw and entry.converter and not Path(raw).resolve().is_relative_to(RAW_ROOT.resolve()):
        typer.echo(f"warning: data.raw_path {raw} is outside {RAW_ROOT}/, which DVC tracks for the prepare stage: a "
                   f"change to its files re-runs nothing (see {RAW_ROOT}/README.md)", err=True)
    classes = prepare_dataset(entry.name, out, raw_path=raw, synthetic=params.prepare.synthetic)
    typer.echo(f"{entry.name}: {len(classes)} classes → {out / entry.train_file}, {out / entry.test_file}")
    if check:
        found = check_prepared(out, entry.train_file, entry.test_file, entry.label_format)
        for warning in found.warnings:
            typer.echo(f"warning: {warning}", err=True)
        if found.errors:
            raise CSRAError("; ".join(found.errors))
        typer.echo("check: every image readable, targets and class counts consistent")
