"""What evaluate, demo and export share: loading the model a ModelSource names (our checkpoint, or an official state
dict) with the dataset's class names, and the name of the MLflow run a stage after train opens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from csra.data.datasets import get_dataset, resolve_classes
from csra.errors import CSRAError
from csra.model.checkpoints import ModelOptions, load_checkpoint_model
from csra.model.network import CSRAModel
from stages.common import ModelSource
from stages.params import DatasetParams
from stages.tracking.execution import run_name


def load_for_inference(ckpt: Path, source: ModelSource, data: DatasetParams,
                       check_classes: bool) -> tuple[CSRAModel, dict[str, Any]]:
    """(model, checkpoint dict) from our checkpoint or an official state dict. The dataset's class names (as
    csra/data/datasets.py resolves them) describe an official file; with check_classes (the user named the dataset,
    or the prepared files are scored) our checkpoint's names must equal them, else our checkpoint's own names are
    used."""
    try:
        classes = resolve_classes(get_dataset(data.dataset), data.prepared_dir)
    except CSRAError:
        if check_classes:
            raise
        classes = None
    options = ModelOptions(backbone=source.backbone, num_heads=source.num_heads, lam=source.lam,
                           img_size=source.img_size, classes=classes, check_classes=check_classes)
    return load_checkpoint_model(ckpt, options)


def stage_run_name(saved: dict[str, Any] | None, stage: str) -> str:
    """The name of a run a stage after train opens when train ran elsewhere (execution.run_name): the dataset,
    recipe and backbone the checkpoint records (the stage's name first where it records no dataset: an official
    state dict, a registered model), then the DVC experiment or the commit."""
    recorded = (saved or {}).get("params")
    recorded = recorded if isinstance(recorded, dict) else {}
    config = (saved or {}).get("model_config")
    words = [recorded.get(key) for key in ("data.dataset", "train.recipe")]
    backbone = config.get("backbone") if isinstance(config, dict) else None
    words = [w for w in (*words, backbone) if isinstance(w, str)]
    return run_name(*([] if recorded.get("data.dataset") else [stage]), *words)
