"""What a client sends the served model, checked and scored: photos as their encoded bytes (JPEG, PNG, WebP, BMP…:
whatever PIL opens), or uint8 pixel arrays (3, H, W). A photo goes through evaluate's own test-time path (PIL's
decode, RGB conversion and bilinear resize to img_size²); an array goes to the exported program, which makes the
same resize bit for bit. A payload it cannot score is a PayloadError: one sentence that names the contract."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

# the registered versions' own code (served_model.py, logged with each) imports IMAGE_COLUMN, PayloadError and
# refused from here: they stay importable from this module, or every version logged before would fail to load
from csra.deploy.photos import (  # noqa: F401
    DEFAULT_MAX_PIXELS,
    IMAGE_COLUMN,
    PayloadError,
    decode_base64,
    photo_array,
    refused,
)

PROGRAM_ARTIFACT, CONTRACT_ARTIFACT = "program", "contract"  # the served model's artifacts (stages/tracking/)
Scorer = Callable[[torch.Tensor], torch.Tensor]  # uint8 (B, 3, H, W) → scores (B, classes): the exported program


def photo_pixels(data: bytes, index: int, size: int, max_pixels: int) -> torch.Tensor:
    """A photo's test-time pixels as a tensor, uint8 (3, size, size): csra.deploy.photos.photo_array."""
    return torch.from_numpy(photo_array(data, index, size, max_pixels))


def array_pixels(array: np.ndarray, max_pixels: int) -> torch.Tensor:
    """uint8 (N, 3, H, W) from an array of pixels (3, H, W) or (N, 3, H, W): integers 0-255, never a cast of
    floats, at most max_pixels per image."""
    if array.size == 0:
        raise refused(f"the array holds no pixels, shape {tuple(array.shape)}")
    if array.dtype == object or array.dtype.kind in "US":
        raise refused("the arrays are not one block of numbers (images of different sizes, or text)")
    if array.dtype.kind not in "iu":
        kind = "floats" if array.dtype.kind == "f" else f"{array.dtype} values"
        raise refused(f"pixels must be integers 0-255, got {kind}")
    if array.ndim not in (3, 4) or array.shape[-3] != 3:
        raise refused(f"pixels must have the shape (3, H, W) or (N, 3, H, W), got {tuple(array.shape)}")
    batch = array[None] if array.ndim == 3 else array
    height, width = batch.shape[2:]
    if height * width > max_pixels:
        raise refused(f"the images have {width}x{height} = {width * height:,} pixels, over the limit of "
                      f"{max_pixels:,}")
    low, high = int(batch.min()), int(batch.max())
    if low < 0 or high > 255:
        raise refused(f"pixels must be integers 0-255, got values from {low} to {high}")
    return torch.from_numpy(np.ascontiguousarray(batch, dtype=np.uint8))


class ImageScorer:
    """Scores of what a client sends, through the exported program: photos (decoded and resized here as evaluate
    does, then scored in one batch) or pixel arrays (scored as sent). Every request is checked whole first."""

    def __init__(self, program: Scorer, classes: Sequence[str], img_size: int, max_pixels: int = DEFAULT_MAX_PIXELS):
        self.program, self.classes = program, list(classes)
        self.img_size, self.max_pixels = img_size, max_pixels

    @torch.no_grad()
    def score_photos(self, photos: Sequence[bytes]) -> np.ndarray:
        """(N, classes) scores of encoded photos."""
        if not photos:
            raise refused("the request holds no image")
        pixels = [photo_pixels(data, i, self.img_size, self.max_pixels) for i, data in enumerate(photos)]
        return self.program(torch.stack(pixels)).numpy()

    def score_base64(self, texts: Sequence[object]) -> np.ndarray:
        """(N, classes) scores of photos sent as base64 text."""
        return self.score_photos([decode_base64(text, i) for i, text in enumerate(texts)])

    @torch.no_grad()
    def score_array(self, array: np.ndarray) -> np.ndarray:
        """(N, classes) scores of uint8 pixels (3, H, W) or (N, 3, H, W)."""
        return self.program(array_pixels(array, self.max_pixels)).numpy()
