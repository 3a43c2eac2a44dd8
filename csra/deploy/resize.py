"""PIL's bilinear resize of 8-bit images, bit for bit, in torch operations that a torch.export program and ONNX run:
the resize of the official test-time preprocessing, inside the exported models.

Pillow resamples in two passes, horizontal then vertical, each a weighted sum of a window of input pixels with
a triangle filter as wide as the scale (antialiasing), its weights normalised and rounded to 22-bit fixed point,
and each pass rounded and clipped to 0..255. The weights here follow the same double-precision arithmetic; the
sums are float64 matrix products whose terms are integers below 2^53, so they are exact in any order.
"""

from __future__ import annotations

import torch

PRECISION_BITS = 22  # Pillow's fixed point for 8-bit images: 32 - 8 - 2
ONE = float(1 << PRECISION_BITS)
HALF = float(1 << (PRECISION_BITS - 1))


def pil_weights(positions: torch.Tensor, out_size: int) -> torch.Tensor:
    """The fixed-point weights (in_size, out_size), as integer-valued float64, of Pillow's bilinear filter for an
    input axis whose pixel indices are positions (float64 0..in_size-1)."""
    in_size = positions[-1:] + 1.0
    scale = in_size / out_size
    filterscale = torch.clamp(scale, min=1.0)
    support, inverse = filterscale, 1.0 / filterscale
    center = (torch.arange(out_size, dtype=torch.float64, device=positions.device) + 0.5) * scale
    first = torch.clamp(torch.floor(center - support + 0.5), min=0.0)  # C truncation: the same once clamped at 0
    last = torch.minimum(torch.floor(center + support + 0.5), in_size)
    x = positions[:, None]
    inside = (x >= first[None, :]) & (x < last[None, :])
    t = torch.abs(((x - center[None, :]) + 0.5) * inverse[None, :])
    weights = torch.where(inside & (t < 1.0), 1.0 - t, torch.zeros_like(t))
    total = torch.cumsum(weights, dim=0)[-1:]  # summed in index order, as Pillow does
    weights = torch.where(total != 0, weights / total, weights)
    return torch.floor(0.5 + weights * ONE)


def _pass(pixels: torch.Tensor) -> torch.Tensor:
    """Round a fixed-point sum to 8 bits as Pillow does: add one half, shift, clip to 0..255."""
    return torch.clamp(torch.floor((pixels + HALF) / ONE), 0.0, 255.0)


def _horizontal_first(x: torch.Tensor, across: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    return _pass(torch.matmul(down, _pass(torch.matmul(x, across))))


def _vertical_first(x: torch.Tensor, across: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    return _pass(torch.matmul(_pass(torch.matmul(down, x)), across))


def pil_bilinear_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (B, 3, H, W) → (B, 3, size, size) float64 with integer values 0..255: exactly what
    PIL.Image.resize((size, size), Image.BILINEAR) of the pinned Pillow gives for each image.

    Pillow 13 runs the vertical pass first when the height shrinks and 2·W < H + size (measured: the order
    changes which pixels round up); older versions always ran the horizontal pass first.
    """
    x = images.to(torch.float64)
    columns = torch.arange(x.shape[-1], dtype=torch.float64, device=x.device)
    rows = torch.arange(x.shape[-2], dtype=torch.float64, device=x.device)
    across, down = pil_weights(columns, size), pil_weights(rows, size).transpose(0, 1)
    height, width = rows[-1:] + 1.0, columns[-1:] + 1.0
    vertical = ((height > size) & (2.0 * width < height + size)).reshape(())
    return torch.cond(vertical, _vertical_first, _horizontal_first, (x, across, down))
