"""The official test-time pixels as a NumPy array, with PIL and NumPy alone (no torch): what a process that only
decodes photos (`csra score`'s decoding tasks) needs, and what csra.data.loading wraps as a tensor for evaluate, demo,
the heatmaps and the served model."""

from __future__ import annotations

import numpy as np
from PIL import Image


def hwc_to_chw(image: Image.Image) -> np.ndarray:
    """A view (3, H, W) of an RGB image's pixels, uint8: a writable copy in PIL's (H, W, 3) layout, transposed
    without a second copy (torch's uint8 resize is fastest on this layout)."""
    return np.array(image).transpose(2, 0, 1)


def test_array(image: Image.Image, size: int, box: tuple[float, ...] | None = None) -> np.ndarray:
    """An RGB image's official test-time pixels, uint8 (3, size, size): cropped to box (WIDER persons), then
    resized with PIL's bilinear filter to size × size."""
    if box is not None:
        image = image.crop(box)
    return hwc_to_chw(image.resize((size, size), Image.BILINEAR))
