"""What evaluate, demo and export share: the model options on the command line and loading a checkpoint (ours or an
official state dict) with the dataset's class names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from csra.errors import CSRAError

# Model options of evaluate, demo and export: needed for an official state dict, checked against our checkpoints.
ModelOption = Annotated[str | None, typer.Option("--model", help="Backbone of an official state dict.")]
NumHeadsOption = Annotated[int | None, typer.Option(help="CSRA heads (read from the weights; checked).")]
LamOption = Annotated[float | None, typer.Option(help="λ of an official state dict.")]
ImgSizeOption = Annotated[int | None, typer.Option(help="Input size (default: the checkpoint's, or 448 for "
                                                        "ResNets and 224 for ViTs).")]
CheckpointOption = Annotated[Path | None, typer.Option(help="Checkpoint (default train.out_dir/best.pt).")]
ModelUriOption = Annotated[str | None, typer.Option(help="A registered model instead of a checkpoint: "
                                                         "models:/NAME@ALIAS (models:/csra@champion) or "
                                                         "models:/NAME/VERSION.")]


def only_one_source(checkpoint: Path | None, model_uri: str | None, **options: Any) -> None:
    """A registered model carries its own model and preprocessing: it takes no checkpoint and no model option."""
    if model_uri is None:
        return
    given = ["--checkpoint"] * (checkpoint is not None) + [
        f"--{name.replace('_', '-')}" for name, value in options.items() if value is not None]
    if given:
        raise CSRAError(f"--model-uri {model_uri}: a registered model takes no {', '.join(given)}")


def load_for_inference(ckpt: Path, dataset: str, prepared_dir: str, check_classes: bool, model: str | None,
                       num_heads: int | None, lam: float | None, img_size: int | None) -> tuple[Any, dict]:
    """(model, checkpoint dict) from our checkpoint or an official state dict. The dataset's class names (the
    registry's rule) describe an official file; with check_classes (the user named the dataset, or the prepared
    files are scored) our checkpoint's names must equal them, else our checkpoint's own names are used."""
    from csra.data.datasets import get_dataset, resolve_classes
    from csra.model.checkpoints import ModelOptions, load_checkpoint_model

    try:
        classes = resolve_classes(get_dataset(dataset), prepared_dir)
    except CSRAError:
        if check_classes:
            raise
        classes = None
    options = ModelOptions(backbone=model, num_heads=num_heads, lam=lam, img_size=img_size, classes=classes,
                           check_classes=check_classes)
    return load_checkpoint_model(ckpt, options)
