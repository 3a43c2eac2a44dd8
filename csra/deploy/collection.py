"""Scoring a photo collection, the parts that know nothing of the engine that runs them (Ray Data in `csra score`):
which photos an input names (a folder, a glob, a text file of paths or URIs, an s3:// prefix), their bytes, their
test-time pixels or the one-line reason a photo has none, a model that scores pixels, and the Parquet part files of
the result, whose paths a resumed job skips.

Pixels come from csra.deploy.photos.photo_array, the served model's own decoding (PIL's decode, RGB, bilinear resize
to img_size², a pixel limit read from the header); scores from the checkpoint's network through evaluate's
normalisation, or from the registered version's exported program: the scores of `csra demo`, `csra evaluate` and the
served model on the same files."""

from __future__ import annotations

import glob
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from csra.deploy.photos import PayloadError, photo_array
from csra.errors import CSRAError, first_line

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
MAX_FILE_BYTES = 512 << 20  # a file larger than this is refused unread (no photo of 40 megapixels comes near it)
PATH, ERROR, LABELS = "path", "error", "labels"  # the result's columns besides one per class
RESERVED = (PATH, ERROR, LABELS)
PART = re.compile(r"part-(\d{6})\.parquet")
GLOB_CHARS = re.compile(r"[*?\[]")


# --- the input -------------------------------------------------------------------------------------------------
def _is_photo(name: str) -> bool:
    return name.lower().endswith(PHOTO_SUFFIXES)


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket:
        raise CSRAError(f"{uri}: expected s3://BUCKET/PREFIX")
    return bucket, key


_S3: list[Any] = []  # this process's S3 client, made once


def s3_client() -> Any:
    """boto3's S3 client, as boto3 configures it: credentials and AWS_ENDPOINT_URL (an S3-compatible server) from
    the environment or ~/.aws."""
    if not _S3:
        try:
            import boto3
        except ImportError:
            raise CSRAError("s3:// photos need boto3: pip install -e '.[team]'") from None
        _S3.append(boto3.client("s3"))
    return _S3[0]


def list_s3(uri: str) -> list[str]:
    """The photo files under an s3:// prefix, by key."""
    bucket, prefix = _s3_parts(uri)
    try:
        pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
    except Exception as e:  # botocore's ClientError, EndpointConnectionError, NoCredentialsError …
        raise CSRAError(f"{uri}: cannot list the prefix ({first_line(e)})") from None
    return sorted(f"s3://{bucket}/{key}" for key in keys if _is_photo(key))


def list_photos(spec: str) -> list[str]:
    """The photos an input names, in a stable order: an s3:// prefix (every photo file under it), a glob (`**`
    for any depth), a folder (every photo file in it and its subfolders) or a text file of paths or URIs, one per
    line (blank lines and # comments skipped; each is scored as written, a path relative to the working folder).
    Photo files: PHOTO_SUFFIXES, in any case. None found is a CSRAError naming the input."""
    if spec.startswith("s3://"):
        found = list_s3(spec)
    elif GLOB_CHARS.search(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
    elif os.path.isdir(spec):
        found = sorted(str(p) for p in Path(spec).rglob("*") if _is_photo(p.name) and p.is_file())
    elif os.path.isfile(spec):
        if _is_photo(spec):
            found = [spec]
        else:
            try:
                text = Path(spec).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise CSRAError(f"{spec}: expected a text file of photo paths or URIs, one per line "
                                f"({first_line(e)})") from None
            found = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    else:
        raise CSRAError(f"{spec}: no such folder, file, glob match or s3:// prefix (expected the photos to score)")
    if not found:
        raise CSRAError(f"{spec}: no photos in it (expected files ending {', '.join(PHOTO_SUFFIXES)})")
    return found


def read_photo(path: str) -> bytes:
    """A photo file's bytes, local or s3://; OSError with the reason when it cannot be read or is over
    MAX_FILE_BYTES."""
    if path.startswith("s3://"):
        bucket, key = _s3_parts(path)
        try:
            answer = s3_client().get_object(Bucket=bucket, Key=key)
        except Exception as e:
            raise OSError(first_line(e)) from None
        if answer["ContentLength"] > MAX_FILE_BYTES:
            answer["Body"].close()
            raise OSError(f"{answer['ContentLength']:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
        return answer["Body"].read()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_FILE_BYTES:
            raise OSError(f"{size:,} bytes, over the limit of {MAX_FILE_BYTES:,}")
        return f.read()


# --- pixels ----------------------------------------------------------------------------------------------------
def decode_photos(paths: list[str], img_size: int, max_pixels: int) -> dict[str, np.ndarray]:
    """{path, pixels: uint8 (N, 3, img_size, img_size), error: '' or why the photo has no pixels (zeros then)}:
    each photo read and decoded as the served model decodes it (photos.photo_array); paths may be an array of
    Ray Data's."""
    paths = [str(p) for p in paths]
    pixels = np.zeros((len(paths), 3, img_size, img_size), dtype=np.uint8)
    errors = [""] * len(paths)
    for i, path in enumerate(paths):
        try:
            pixels[i] = photo_array(read_photo(path), 0, img_size, max_pixels)
        except FileNotFoundError:
            errors[i] = "no such file"
        except OSError as e:
            errors[i] = f"cannot read the file ({e.strerror or first_line(e)})"
        except PayloadError as e:  # "image 0 is …" / "image 0 has …"
            errors[i] = e.what.removeprefix("image 0 ").removeprefix("is ").removeprefix("has ")
    return {PATH: np.array(paths, dtype=object), "pixels": pixels, ERROR: np.array(errors, dtype=object)}


# --- the model -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelFile:
    """A model as bytes that travel to the workers that score: a checkpoint (kind 'checkpoint') or a registered
    version's torch.export program (kind 'program'), with its classes, input size and per-class thresholds."""

    kind: str
    data: bytes
    classes: list[str]
    img_size: int
    thresholds: list[float | None] | None
    name: str  # what the user named: the checkpoint's path or the models:/ URI


class PixelScorer:
    """Test-time pixels (B, 3, img_size, img_size) → sigmoid scores (B, classes) as float32, the model loaded once:
    a checkpoint's network after evaluate's normalisation (csra.evaluate.predict's path), or the exported program
    (which normalises itself, as the served model does)."""

    def __init__(self, model: ModelFile, device: str = "auto", threads: int | None = None):
        import torch

        from csra.evaluate.predict import resolve_device

        if threads:
            torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.num_classes = len(model.classes)
        if model.kind == "checkpoint":
            from csra.model.checkpoints import load_checkpoint_model

            path = _spill(model.data, ".pt")
            try:
                net, _ = load_checkpoint_model(path)
            finally:
                os.unlink(path)
            self.net, self.program = net.to(self.device).eval(), None
        else:
            self.net, self.program = None, torch.export.load(io.BytesIO(model.data)).module()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        import torch

        from csra.data.loading import prepare_batch

        with torch.no_grad():
            batch = torch.from_numpy(np.ascontiguousarray(pixels))
            if self.net is None:
                return self.program(batch).numpy().astype(np.float32)
            logits = self.net(prepare_batch(batch, self.net.config, self.device, channels_last=False))
            return torch.sigmoid(logits.float()).cpu().numpy()


def _spill(data: bytes, suffix: str) -> str:
    import tempfile

    fd, path = tempfile.mkstemp(suffix=suffix)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def score_decoded(scorer: PixelScorer, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{path, error, scores (N, classes) float32, NaN for a photo with an error} of a decoded batch."""
    errors = batch[ERROR]
    good = np.array([not e for e in errors], dtype=bool)
    scores = np.full((len(errors), scorer.num_classes), np.nan, dtype=np.float32)
    if good.any():
        scores[good] = scorer(batch["pixels"][good])
    return {PATH: batch[PATH], ERROR: errors, "scores": scores}


# --- the result ------------------------------------------------------------------------------------------------
def result_table(paths: list[str], errors: list[str], scores: np.ndarray, classes: list[str],
                 thresholds: list[float]) -> Any:
    """The rows of scored photos as an Arrow table: path, one float32 column per class in the model's order (null
    for a photo with an error), the labels (classes whose score reaches their threshold; null with an error), and
    error (null for a scored photo)."""
    import pyarrow as pa

    bad = np.array([bool(e) for e in errors], dtype=bool)
    columns: dict[str, Any] = {PATH: pa.array(paths, pa.string())}
    for k, name in enumerate(classes):
        columns[name] = pa.array(scores[:, k], pa.float32(), mask=bad)
    limits = np.array(thresholds, dtype=np.float32)
    labels = [None if b else [c for c, hit in zip(classes, row >= limits) if hit]
              for b, row in zip(bad, scores)]
    columns[LABELS] = pa.array(labels, pa.list_(pa.string()))
    columns[ERROR] = pa.array([e or None for e in errors], pa.string())
    return pa.table(columns)


def part_files(folder: Path) -> list[Path]:
    """The part files of a result folder, in order."""
    return sorted(p for p in folder.iterdir() if PART.fullmatch(p.name)) if folder.is_dir() else []


def part_name(number: int) -> str:
    return f"part-{number:06d}.parquet"


def written_paths(folder: Path) -> Iterator[str]:
    """The paths of the photos whose rows the part files in folder hold (a part file a killed writer left
    unfinished is never there: each one is written under a temporary name, then renamed)."""
    import pyarrow.parquet as pq

    for part in part_files(folder):
        yield from pq.read_table(part, columns=[PATH]).column(PATH).to_pylist()
