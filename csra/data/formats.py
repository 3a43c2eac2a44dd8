"""The official CSRA annotation JSON (a list of {"img_path", "target"}), its label codes and class lists."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from csra.errors import CSRAError
from csra.fileio import decode_text, read_text, write_json, write_text

# Label codes allowed per label format. Training files are always 0/1.
# voc07 test: 1 positive, 0 difficult (ignored), -1 negative. wider test: 99 = unspecified (ignored for mAP).
LABEL_CODES: dict[str, frozenset[int]] = {
    "binary": frozenset({0, 1}),
    "voc07": frozenset({-1, 0, 1}),
    "coco": frozenset({0, 1}),
    "wider": frozenset({0, 1, 99}),
}
CLASSES_FILE = "classes.txt"


def read_json(path: Path, kind: str) -> Any:
    """The parsed JSON file at path; kind names the file in the error messages (missing file, invalid JSON)."""
    if not path.is_file():
        raise CSRAError(f"{path}: {kind} file not found")
    data = path.read_bytes()
    try:
        return orjson.loads(data)  # several times faster than json on the large annotation and scores files
    except orjson.JSONDecodeError:
        pass  # not strict JSON: the json module also reads NaN and Infinity (checked where they matter) and says why
    try:
        return json.loads(decode_text(data, path))
    except json.JSONDecodeError as e:
        raise CSRAError(f"{path}: not valid JSON ({e})") from None


def _read_json_list(path: Path, kind: str, entry: str) -> list:
    """A non-empty JSON list from path; kind names the file and entry its items in the error messages."""
    data = read_json(path, kind)
    if not isinstance(data, list) or not data:
        raise CSRAError(f"{path}: expected a non-empty JSON list of {entry} items")
    return data


def read_annotations(path: str | Path, num_classes: int | None = None, label_format: str = "voc07") -> list[dict]:
    """Read and check an annotation file; errors name the file, the item and what was expected."""
    path = Path(path)
    items = _read_json_list(path, "annotation", "{'img_path', 'target'}")
    expected = num_classes
    for i, item in enumerate(items):
        if type(item) is not dict or type(item.get("img_path")) is not str:
            raise CSRAError(f"{path}: item {i} has no string 'img_path'")
        target = item.get("target")
        if type(target) is not list:
            raise CSRAError(f"{path}: item {i} ('target') is not a list of integers")
        expected = len(target) if expected is None else expected
        if len(target) != expected:
            raise CSRAError(f"{path}: item {i} has {len(target)} classes in 'target', expected {expected}")
        bbox = item.get("bbox")
        if bbox is not None and (not isinstance(bbox, list) or len(bbox) != 4
                                 or not all(isinstance(v, (int, float)) for v in bbox) or min(bbox[2:]) <= 0):
            raise CSRAError(f"{path}: item {i} ('bbox') is not [x, y, w, h] with a positive width and height")
    _check_codes(path, items, label_format)
    return items


def _check_codes(path: Path, items: list[dict], label_format: str) -> None:
    """Every target value an integer (not a boolean) among the label format's codes; checked over all values at
    once, then the first offending item found to name it."""
    codes = LABEL_CODES[label_format]
    values = list(itertools.chain.from_iterable(item["target"] for item in items))
    if set(map(type, values)) <= {int} and set(values) <= codes:
        return
    for i, item in enumerate(items):
        if not all(type(t) is int for t in item["target"]):
            raise CSRAError(f"{path}: item {i} ('target') is not a list of integers")
        bad = set(item["target"]) - codes
        if bad:
            allowed = ", ".join(map(str, sorted(codes)))
            raise CSRAError(f"{path}: item {i} has label code {min(bad)}; {label_format} files allow {allowed}")


def write_annotations(path: str | Path, items: list[dict]) -> Path:
    """Write items in the official layout (json.dump defaults, key order as the official scripts)."""
    return write_json(path, items)


def read_classes(path: str | Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise CSRAError(f"{path}: class list not found (one class name per line)")
    text = read_text(path)
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise CSRAError(f"{path}: class list is empty (one class name per line)")
    if len(set(names)) != len(names):
        duplicate = next(name for i, name in enumerate(names) if name in names[:i])
        raise CSRAError(f"{path}: class list has duplicate name {duplicate!r}; expected each name once")
    return names


def write_classes(path: str | Path, names: list[str]) -> Path:
    return write_text(path, "".join(f"{n}\n" for n in names))


def image_stem(img_path: str) -> str:
    """The official result files' "file_name": the image file name up to its first dot."""
    return os.path.basename(img_path).split(".")[0]


def read_scores(path: str | Path, items: list[dict], num_classes: int) -> np.ndarray:
    """Read an official result file (a list of {"file_name", "scores"} in annotation order) and check it
    against the annotation items: same length, same images in the same order, num_classes finite scores in
    [0, 1] each. Returns the scores (N, num_classes) as float64."""
    path = Path(path)
    entries = _read_json_list(path, "scores", "{'file_name', 'scores'}")
    if len(entries) != len(items):
        raise CSRAError(f"{path}: {len(entries)} entries, but the annotation file has {len(items)} images")
    rows = []
    for i, (entry, item) in enumerate(zip(entries, items)):
        values = entry.get("scores") if isinstance(entry, dict) else None
        if not isinstance(values, list):
            raise CSRAError(f"{path}: entry {i} has no list of numbers under 'scores'")
        if len(values) != num_classes:
            raise CSRAError(f"{path}: entry {i} has {len(values)} scores, expected {num_classes} classes")
        name = entry.get("file_name")
        if name is not None and name != image_stem(item["img_path"]):
            raise CSRAError(f"{path}: entry {i} is {name!r} but annotation item {i} is "
                            f"{image_stem(item['img_path'])!r}; scores must follow the annotation order")
        rows.append(values)
    return _score_array(path, rows, num_classes)


def _score_array(path: Path, rows: list[list], num_classes: int) -> np.ndarray:
    """The rows as float64, or one line naming the first entry whose scores are not numbers, not finite, or
    outside [0, 1] (the official result files hold sigmoid scores)."""
    scores = np.array(rows, dtype=object if not rows else None).reshape(len(rows), num_classes)
    if scores.dtype.kind not in "iuf":
        i = next(i for i, row in enumerate(rows)
                 if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row))
        raise CSRAError(f"{path}: entry {i} has no list of numbers under 'scores'")
    scores = scores.astype(np.float64)
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        i, c = (int(k) for k in np.argwhere(bad)[0])
        raise CSRAError(f"{path}: entry {i} has score {scores[i, c]} for class {c}: scores must be finite and in "
                        "[0, 1] (sigmoid scores)")
    return scores


def items_digest(items: list[dict]) -> str:
    """A digest of annotation items (image paths and targets, in order)."""
    blob = json.dumps([[item["img_path"], item["target"]] for item in items])
    return hashlib.sha256(blob.encode()).hexdigest()
