"""The exported models' resize is PIL's bilinear resize bit for bit: every size, both pass orders, up and down."""

import numpy as np
import pytest
import torch
from PIL import Image

from csra.deploy.resize import pil_bilinear_resize

SIZES = [(1, 1), (1, 37), (37, 1), (48, 64), (64, 48), (97, 300), (300, 97), (233, 105), (105, 233), (500, 375),
         (20, 600), (96, 96), (95, 97), (700, 40)]


@pytest.mark.parametrize("size", [32, 96])
def test_equals_pil_on_noise_of_every_shape(size):
    rng = np.random.default_rng(size)
    for height, width in SIZES:
        pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
        ours = pil_bilinear_resize(torch.from_numpy(pixels).permute(2, 0, 1)[None], size)[0]
        np.testing.assert_array_equal(ours.permute(1, 2, 0).numpy(), expected, err_msg=f"{height}x{width}")


def test_a_batch_is_resized_image_by_image():
    rng = np.random.default_rng(1)
    batch = torch.from_numpy(rng.integers(0, 256, (3, 3, 50, 70), dtype=np.uint8))
    whole = pil_bilinear_resize(batch, 32)
    assert whole.shape == (3, 3, 32, 32) and whole.dtype == torch.float64
    for image, resized in zip(batch, whole):
        assert torch.equal(pil_bilinear_resize(image[None], 32)[0], resized)
