"""What a client may send the served model, and a photo's bytes → its test-time pixels or the one sentence that says
why it has none, with PIL and NumPy alone (no torch): the served model (csra.deploy.serving) and `csra score`'s
decoding tasks, which import nothing heavier, decode photos through this."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image

from csra.data.pixels import test_array
from csra.errors import CSRAError, first_line

DEFAULT_MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; a larger one is refused unread
IMAGE_COLUMN = "image"
PHOTOS = (f"photos as base64 strings of their file bytes in a column named {IMAGE_COLUMN!r} "
          f'({{"dataframe_records": [{{"{IMAGE_COLUMN}": "<base64>"}}]}})')
ARRAYS = 'uint8 RGB pixels (3, H, W) or (N, 3, H, W) as integers 0-255 ({"inputs": [...]})'
CONTRACT = f"send {PHOTOS}, or {ARRAYS}"


class PayloadError(CSRAError):
    """A request the model cannot score; its message is one sentence for the client (refused's)."""

    what = ""  # what is wrong, the message without the contract


def refused(what: str) -> PayloadError:
    """The error for a payload the model cannot score: what is wrong, then the contract."""
    error = PayloadError(f"{what}: {CONTRACT}")
    error.what = what
    return error


def decode_base64(text: object, index: int) -> bytes:
    """The bytes of image index from its base64 text: the standard alphabet with its padding; line breaks and
    spaces (as `base64` without -w0 writes) are ignored, any other character is refused."""
    if not isinstance(text, str):
        raise refused(f"image {index} is a {type(text).__name__}, not a base64 string")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise refused(f"image {index} is not base64 text") from None


def photo_array(data: bytes, index: int, size: int, max_pixels: int) -> np.ndarray:
    """A photo's test-time pixels, uint8 (3, size, size), as evaluate reads a file: PIL's decode, RGB and bilinear
    resize. Its size is read from the header first: one over max_pixels is refused before it is decoded."""
    if not data:
        raise refused(f"image {index} is empty")
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise refused(f"image {index} has {width}x{height} = {width * height:,} pixels, over the limit of "
                              f"{max_pixels:,}")
            return test_array(image.convert("RGB"), size)
    except PayloadError:
        raise
    except Image.UnidentifiedImageError:
        raise refused(f"image {index} is not an image file PIL can open") from None
    except Image.DecompressionBombError:  # Pillow's own limit, beyond ours, is checked as the header is read
        raise refused(f"image {index} is over the limit of {max_pixels:,} pixels (Pillow takes it for a "
                      "decompression bomb)") from None
    except Exception as e:  # PIL raises what its decoders raise: OSError, SyntaxError, ValueError, EOFError, …
        reason = first_line(e)
        raise refused(f"image {index} is not a complete image file PIL can open ({reason})") from None
