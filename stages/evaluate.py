"""`csra evaluate`: a checkpoint on an annotation file → metrics.json, scores.json, per_class.csv and plots/
(stages/report.py), and the metrics in the pipeline's MLflow run with the scored data as its evaluation input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer

from csra.backends import set_kernels
from csra.data.datasets import DatasetEntry, get_dataset
from csra.data.formats import items_digest
from csra.data.loading import loader_workers
from csra.evaluate.predict import predict, resolve_device
from csra.fileio import atomic_dir
from csra.model.network import CSRAModel
from stages.common import ModelSource, machine
from stages.inference import load_for_inference, stage_run_name
from stages.params import load_params
from stages.report import EvaluateParams, Params, read_items, summary, write_report
from stages.tracking import runs
from stages.tracking.lineage import DataVersion, annotation_version, prepared_version
from stages.tracking.runs import TEST_DIGEST, TEST_FILE, Recorder

__all__ = ["Params", "run"]


def model_scores(net: CSRAModel, items: list[dict], settings: EvaluateParams) -> np.ndarray:
    """A model's scores of every item through the one prediction path, with the loader workers of this machine
    when evaluate.num_workers is auto."""
    device = resolve_device(settings.device)
    set_kernels(settings.deterministic)
    workers = loader_workers(settings.num_workers, *machine(), device.type)
    return predict(net, items, net.config, settings.batch_size, workers, device).scores


def selection_note(ckpt: Path, saved: dict, items: list[dict]) -> str | None:
    """A note when the items are exactly those the checkpoint's best epoch was selected on."""
    selection = saved.get("selection")
    if not selection or selection["digest"] != items_digest(items):
        return None
    return (f"note: {ckpt} was selected on these images ({selection['split']}: {selection['source']}): its metrics "
            "here are not held out (data.selection: val holds a split out)")


def record_test_data(recorder: Recorder, entry: DatasetEntry, prepared_dir: str, ann: Path,
                     items: list[dict]) -> None:
    """The scored data as the run's evaluation input — the prepared folder's test file, named apart from the
    training input (MLflow shows one input per dataset name and digest), or the annotation file given from
    elsewhere — and the annotation file's path and items digest as tags, by which export compares versions."""
    inside = ann.resolve().parent == Path(prepared_dir).resolve()
    if inside:
        folder = prepared_version(entry, prepared_dir)
        scored = DataVersion(f"{entry.name}: {ann.name}", str(ann), folder.digest, {ann.name: len(items)})
    else:
        scored = annotation_version(ann)
    recorder.dataset(scored, "evaluation")
    recorder.tag(TEST_FILE, str(ann))
    recorder.tag(TEST_DIGEST, items_digest(items))


def run(params_file: Path, overrides: dict[str, object], source: ModelSource, annotations: Path | None) -> None:
    """A model's metrics on the annotation file (default: the prepared test file), logged to this execution's
    MLflow run with the scored data as its evaluation input."""
    params = load_params(Params, params_file, overrides)
    entry = get_dataset(params.data.dataset)
    ann = annotations or Path(params.data.prepared_dir) / entry.test_file
    ckpt = source.checkpoint_or(params.train.out_dir)
    # the classes are checked when the user names the dataset or the prepared test file is scored
    net, saved = load_for_inference(ckpt, source, params.data, source.dataset_given or annotations is None)
    classes = saved["classes"]
    items = read_items(ann, entry, classes, str(ckpt))
    values = model_scores(net, items, params.evaluate)
    note = selection_note(ckpt, saved, items)
    with atomic_dir(Path(params.evaluate.out_dir)) as tmp:  # all outputs or none: the previous stay till then
        metrics, aps = write_report(tmp, values, items, classes, entry.label_format, params.evaluate.threshold,
                                    with_scores=True, plots=True)
        with runs.stage_run(ckpt, params.tracking.experiment, params.flat(), stage_run_name(saved, "evaluate"),
                                saved) as recorder:
            recorder.metrics(metrics)
            recorder.tag("evaluated_on_selection_images", str(note is not None).lower())
            record_test_data(recorder, entry, params.data.prepared_dir, ann, items)
            recorder.artifacts(tmp, "evaluate")
            recorder.describe("evaluate", f"test mAP {metrics['mAP']:.2f} on {ann.name} ({len(items)} images) of "
                                          f"{params.data.dataset}, model {ckpt}"
                                          + (" (its best epoch was picked on these images)" if note else ""))
    typer.echo("\n".join(summary(metrics, classes, aps, ann) + ([note] if note else [])))


