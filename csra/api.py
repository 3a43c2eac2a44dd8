"""The public Python API for engineers who import the library: load a checkpoint (ours or an official state dict),
score images or a folder through the one prediction path, and score a predictions file with the official metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Prediction:
    """One image's result: its path, every class's sigmoid score and the classes predicted."""

    image: Path
    scores: dict[str, float]
    labels: list[str]


class Classifier:
    """A loaded CSRA model with its class names and, when training tuned them, per-class thresholds."""

    def __init__(self, model: Any, classes: list[str], thresholds: list | None, device: str = "auto"):
        from csra.evaluate.predict import resolve_device

        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.classes, self.tuned = list(classes), thresholds

    def thresholds(self, threshold: float | str) -> list[float]:
        """A number (every class), or 'per_class' for the tuned ones (the checkpoint must store them)."""
        from csra.deploy.scoring import class_thresholds

        if threshold == "per_class":
            return class_thresholds(len(self.classes), 0.5, self.tuned, True, "this model")
        return class_thresholds(len(self.classes), float(threshold))

    def score(self, images: list[str | Path], threshold: float | str = 0.5,
              batch_size: int = 16) -> list[Prediction]:
        """Score image files; an unreadable one is a CSRAError naming it."""
        from csra.deploy.scoring import predict_files, predicted_labels

        results = predict_files(self.model, [Path(p) for p in images], self.device, batch_size, skip_bad=False)
        limits = self.thresholds(threshold)
        return [Prediction(path, dict(zip(self.classes, scores)), predicted_labels(scores, self.classes, limits))
                for path, scores in results]

    def score_folder(self, folder: str | Path, threshold: float | str = 0.5) -> list[Prediction]:
        """Score every JPEG and PNG directly in a folder, in name order."""
        from csra.data.loading import list_images

        return self.score(list_images(folder), threshold)


def load_model(path: str | Path, *, model: str | None = None, lam: float | None = None,
               num_heads: int | None = None, img_size: int | None = None, dataset: str | None = None,
               classes: list[str] | None = None, device: str = "auto") -> Classifier:
    """A Classifier from one of our checkpoints (nothing else needed), or from a state dict saved by the official
    code: then give model, lam and the class names (dataset 'voc07', 'coco' or 'wider', or classes)."""
    from csra.data.datasets import get_dataset
    from csra.model.checkpoints import ModelOptions, load_checkpoint_model

    if dataset is not None and classes is None:
        fixed = get_dataset(dataset).classes
        classes = list(fixed) if fixed is not None else None
    options = ModelOptions(backbone=model, num_heads=num_heads, lam=lam, img_size=img_size, classes=classes)
    net, saved = load_checkpoint_model(path, options)
    return Classifier(net, saved["classes"], saved.get("thresholds"), device)


def evaluate_predictions(scores: str | Path, annotations: str | Path, dataset: str,
                         threshold: float = 0.5) -> dict[str, float]:
    """The official metrics (percent: mAP, CP, CR, CF1, OP, OR, OF1 and their _top3 forms) of a scores file in the
    official result format against an annotation file, with the label codes of dataset."""
    import numpy as np

    from csra.data.datasets import get_dataset
    from csra.data.formats import read_annotations, read_scores
    from csra.evaluate.metrics import evaluate_scores

    entry = get_dataset(dataset)
    items = read_annotations(annotations, label_format=entry.label_format)
    values = np.array(read_scores(scores, items, len(items[0]["target"])), dtype=np.float64)
    targets = np.array([item["target"] for item in items])
    return evaluate_scores(values, targets, entry.label_format, threshold)[0]
