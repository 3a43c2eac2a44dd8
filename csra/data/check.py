"""Checks of prepared annotation files before a run: missing or unreadable images, classes without a positive,
class counts; each finding is one line naming the file."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from csra.data.formats import CLASSES_FILE, read_annotations, read_classes
from csra.errors import CSRAError, first_line

LISTED = 3  # paths named per finding; the count gives the rest


@dataclass
class Findings:
    errors: list[str] = field(default_factory=list)  # missing or unreadable images: not usable as it is
    warnings: list[str] = field(default_factory=list)  # worth knowing, not fatal
    bad_paths: set[str] = field(default_factory=set)  # image files that are missing or unreadable

    def extend(self, other: Findings) -> None:
        self.errors += other.errors
        self.warnings += other.warnings
        self.bad_paths |= other.bad_paths


def listing(entries: list[str]) -> str:
    more = len(entries) - LISTED
    return ", ".join(entries[:LISTED]) + (f" and {more} more" if more > 0 else "")


def image_problem(path: str) -> str | None:
    """Why an existing image file cannot be decoded (unreadable, truncated), or None. A JPEG is decoded at 1/8
    scale: every byte is still read, so a truncated file is caught at a fraction of the full cost."""
    try:
        with Image.open(path) as image:
            image.draft(None, (1, 1))
            image.load()
    except UnidentifiedImageError:
        return "not an image PIL decodes"
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        return first_line(e)
    return None


def check_images(file: Path, paths: list[str], decode: bool) -> Findings:
    """Missing image files (and with decode, unreadable ones) among the distinct paths of an annotation file."""
    unique = list(dict.fromkeys(paths))
    missing = [p for p in unique if not os.path.isfile(p)]
    found = Findings(bad_paths=set(missing))
    if missing:
        found.errors.append(f"{file}: {len(missing)} of {len(unique)} image files missing: {listing(missing)}")
    if decode:
        present = [p for p in unique if p not in found.bad_paths]
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:  # PIL decodes without the GIL
            problems = [(p, why) for p, why in zip(present, pool.map(image_problem, present)) if why]
        if problems:
            found.bad_paths.update(p for p, _ in problems)
            found.errors.append(f"{file}: {len(problems)} unreadable images: "
                                f"{listing([f'{p} ({why})' for p, why in problems])}")
    return found


def check_items(file: Path, items: list[dict], classes: list[str], decode: bool) -> Findings:
    """Class count against the class list (a CSRAError), classes without a positive image, and the images of
    one file."""
    count = len(items[0]["target"])
    if count != len(classes):
        raise CSRAError(f"{file}: {count} classes per target, but {CLASSES_FILE} lists {len(classes)}")
    found = check_images(file, [item["img_path"] for item in items], decode)
    empty = [name for i, name in enumerate(classes) if not any(item["target"][i] == 1 for item in items)]
    if empty:
        found.warnings.append(f"{file}: no positive image for {len(empty)} classes: {listing(empty)}")
    return found


def check_prepared(prepared_dir: str | Path, train_file: str, test_file: str, label_format: str) -> Findings:
    """Every check on a prepared folder (its two annotation files and classes.txt), decoding each image once.

    Broken JSON, label codes outside the allowed ones and class counts that differ raise at once.
    """
    prepared = Path(prepared_dir)
    classes = read_classes(prepared / CLASSES_FILE)
    found = Findings()
    for name, codes in ((train_file, "binary"), (test_file, label_format)):
        items = read_annotations(prepared / name, label_format=codes)
        found.extend(check_items(prepared / name, items, classes, decode=True))
    return found
