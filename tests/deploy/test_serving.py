"""The registered model as a client meets it: `mlflow models serve` on a free loopback port takes photo files (base64
in a column `image`) and uint8 pixel arrays, answers with the eager scores of evaluate's path, and refuses every
payload it cannot score with a 4xx naming the contract — and still answers afterwards."""

import base64
import io
import json
import struct
import zlib

import numpy as np
import pytest
import torch
import yaml
from helpers import (
    BIN,
    free_port,
    make_tiny_checkpoint,
    new_store,
    post_raw,
    repo_params,
    run,
    start,
    stop,
    wait_until_answers,
)
from PIL import Image

from csra.deploy.export import PARITY_TOLERANCE, decode_rgb, eager_scores, photo_file
from csra.deploy.photos import CONTRACT, PayloadError
from csra.deploy.serving import array_pixels, photo_pixels
from csra.model.checkpoints import load_checkpoint_model

MAX_PIXELS = 2_000_000  # export.max_pixels of the served model here


@pytest.fixture(scope="module")
def served(tmp_path_factory, mlflow_template):
    """(invocations URL, the eager model, its classes) of a tiny checkpoint exported, registered and served."""
    root = tmp_path_factory.mktemp("served")
    uri = new_store(root, mlflow_template)
    checkpoint = make_tiny_checkpoint(root / "train" / "model.pt")
    params = repo_params()
    params["export"]["max_pixels"] = MAX_PIXELS
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        code, output = run("export", "--checkpoint", str(checkpoint), "--out-dir", str(root / "export"),
                           "--registered-model", "tiny", "--register", "always", "--params", str(root / "params.yaml"))
    assert code == 0, output
    assert "served model: max |score - eager score|" in output
    port, log = free_port(), root / "serve.log"
    server = start([str(BIN / "mlflow"), "models", "serve", "-m", "models:/tiny/1", "--env-manager", "local",
                    "--host", "127.0.0.1", "--port", str(port)], log, MLFLOW_TRACKING_URI=uri)
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/ping", server, log)
        model, saved = load_checkpoint_model(checkpoint)
        yield f"http://127.0.0.1:{port}/invocations", model, saved["classes"]
    finally:
        stop(server)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def records(*photos: bytes) -> bytes:
    return json.dumps({"dataframe_records": [{"image": b64(p)} for p in photos]}).encode()


def scores_of(answer, classes) -> torch.Tensor:
    assert all(list(row) == classes for row in answer["predictions"])  # named, in the model's class order
    return torch.tensor([list(row.values()) for row in answer["predictions"]])


PHOTOS = [(375, 500, "JPEG"), (500, 333, "PNG"), (48, 64, "WEBP"), (1200, 900, "JPEG"), (90, 400, "PNG")]


def in_mode(data: bytes, mode: str, file_format: str) -> bytes:
    """The photo re-saved in another Pillow mode: grey (L), with alpha (RGBA) or a palette (P)."""
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).convert(mode).save(buffer, format=file_format)
    return buffer.getvalue()


def test_photo_files_of_three_formats_and_several_sizes_get_the_eager_scores(served):
    url, model, classes = served
    photos = [photo_file(h, w, seed, fmt) for seed, (h, w, fmt) in enumerate(PHOTOS)]
    status, answer = post_raw(url, records(*photos))  # one request, each photo at its own size
    assert status == 200, answer
    expected = torch.cat([eager_scores(model, decode_rgb(p)[None]) for p in photos])  # evaluate's PIL path
    assert torch.allclose(scores_of(answer, classes), expected, atol=PARITY_TOLERANCE)
    split = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[b64(photos[1])]]}}).encode()
    status, answer = post_raw(url, split)
    assert status == 200 and torch.allclose(scores_of(answer, classes), expected[1:2], atol=PARITY_TOLERANCE)


def test_grey_alpha_and_palette_photos_are_scored_as_evaluate_reads_them(served):
    url, model, classes = served
    photo = photo_file(120, 160, 3, "PNG")
    others = [in_mode(photo, "L", "JPEG"), in_mode(photo, "RGBA", "PNG"), in_mode(photo, "P", "PNG")]
    status, answer = post_raw(url, records(*others))
    assert status == 200, answer
    expected = torch.cat([eager_scores(model, decode_rgb(p)[None]) for p in others])  # PIL's convert("RGB")
    assert torch.allclose(scores_of(answer, classes), expected, atol=PARITY_TOLERANCE)


def test_base64_with_line_breaks_is_read_and_stray_characters_are_refused(served):
    url, model, classes = served
    photo = photo_file(60, 80, 5, "JPEG")
    text = b64(photo)
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))  # as `base64` writes it without -w0
    status, answer = post_raw(url, json.dumps({"dataframe_records": [{"image": wrapped}]}).encode())
    assert status == 200 and torch.allclose(scores_of(answer, classes), eager_scores(model, decode_rgb(photo)[None]),
                                            atol=PARITY_TOLERANCE)
    stray = text[:40] + "!" + text[40:]
    status, answer = post_raw(url, json.dumps({"dataframe_records": [{"image": stray}]}).encode())
    assert status == 400 and "image 0 is not base64 text" in answer["message"]


def test_pixel_arrays_stay_possible(served):
    url, model, classes = served
    pixels = decode_rgb(photo_file(60, 80, 7, "PNG"))
    pixels[:, :4], pixels[:, -4:] = 0, 255  # the whole range is accepted
    for payload in ({"inputs": pixels.tolist()}, {"inputs": [pixels.tolist(), pixels.tolist()]}):
        status, answer = post_raw(url, json.dumps(payload).encode())
        assert status == 200, answer
        expected = eager_scores(model, pixels[None])
        assert all(torch.allclose(row, expected[0], atol=PARITY_TOLERANCE) for row in scores_of(answer, classes))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and header for width × height, with one tiny data chunk: a decompression bomb's shape
    (a 20000 × 20000 image in a few bytes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    data = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + data + chunk(b"IEND", b"")


def jpeg_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 30, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def pixels(shape, value=0, dtype=int):
    return np.full(shape, value, dtype=dtype).tolist()


JSON = "application/json"
# (name, body, content type, status, what the message must say)
BAD = [
    ("floats in 0..1", json.dumps({"inputs": pixels((3, 8, 8), 0.5, float)}), JSON, 400,
     "pixels must be integers 0-255, got floats"),
    ("values over 255", json.dumps({"inputs": pixels((3, 8, 8), 300)}), JSON, 400, "got values from 300 to 300"),
    ("negative values", json.dumps({"inputs": pixels((3, 8, 8), -1)}), JSON, 400, "got values from -1 to -1"),
    ("channel-last", json.dumps({"inputs": pixels((8, 8, 3))}), JSON, 400,
     "shape (3, H, W) or (N, 3, H, W), got (8, 8, 3)"),
    ("grey", json.dumps({"inputs": pixels((8, 8))}), JSON, 400, "got (8, 8)"),
    ("4 channels", json.dumps({"inputs": pixels((4, 8, 8))}), JSON, 400, "got (4, 8, 8)"),
    ("an empty image", json.dumps({"inputs": [[[]], [[]], [[]]]}), JSON, 400, "holds no pixels"),
    ("two sizes in one batch", json.dumps({"inputs": [pixels((3, 8, 8)), pixels((3, 9, 9))]}), JSON, 400, None),
    ("an array over the pixel limit", json.dumps({"inputs": pixels((3, 1, MAX_PIXELS + 1))}), JSON, 400,
     f"over the limit of {MAX_PIXELS:,}"),
    ("bytes that are not an image", records(b"just some text, not a photo"), JSON, 400,
     "image 0 is not an image file PIL can open:"),
    ("a truncated JPEG", records(jpeg_bytes(), jpeg_bytes()[:300]), JSON, 400,
     "image 1 is not a complete image file PIL can open"),
    ("a string that is not base64", json.dumps({"dataframe_records": [{"image": "not base64!"}]}), JSON, 400,
     "image 0 is not base64 text"),
    ("a number instead of a string", json.dumps({"dataframe_records": [{"image": 7}]}), JSON, 400,
     "image 0 is a int, not a base64 string"),
    ("an empty image string", json.dumps({"dataframe_records": [{"image": ""}]}), JSON, 400, "image 0 is empty"),
    ("an empty request", json.dumps({"dataframe_records": []}), JSON, 400, "the request holds no image"),
    ("a 20000x20000 PNG", records(png_header_only(20000, 20000)), JSON, 400,
     f"image 0 is over the limit of {MAX_PIXELS:,} pixels"),
    ("a 2000x1001 PNG", records(png_header_only(2000, 1001)), JSON, 400,
     f"image 0 has 2000x1001 = 2,002,000 pixels, over the limit of {MAX_PIXELS:,}"),
    ("a wrong column", json.dumps({"dataframe_records": [{"img": b64(jpeg_bytes())}]}), JSON, 400,
     "the request's columns are img, not only 'image'"),
    ("not JSON", "{not json", JSON, 400, None),
    ("a wrong key", json.dumps({"pictures": [b64(jpeg_bytes())]}), JSON, 400, None),
    ("the photo's own bytes", jpeg_bytes(), "image/jpeg", 415, None),
]


@pytest.mark.parametrize("name, body, content_type, status, says", BAD, ids=[b[0] for b in BAD])
def test_a_payload_it_cannot_score_is_a_4xx_naming_the_contract(served, name, body, content_type, status, says):
    url, _, classes = served
    got, answer = post_raw(url, body if isinstance(body, bytes) else body.encode(), content_type)
    assert got == status, answer
    if says is not None:  # ours: what is wrong, then the contract; the others are MLflow's own 4xx
        message = answer["message"]
        assert says in message and CONTRACT in message and answer["error_code"] == "INVALID_PARAMETER_VALUE"
        assert len(message) < 2000  # never the request echoed back whole
    good, answer = post_raw(url, records(jpeg_bytes()))  # and the server still answers
    assert good == 200 and len(answer["predictions"]) == 1


def test_exactly_max_pixels_is_scored_and_one_more_is_refused():
    """The limit is inclusive, for a photo (read from its header) as for an array: width x height = max_pixels is
    scored, max_pixels - 1 refuses it."""
    photo, array = jpeg_bytes((8, 6)), np.zeros((3, 6, 8), dtype=np.uint8)
    assert photo_pixels(photo, 0, 4, max_pixels=48).shape == (3, 4, 4)
    assert array_pixels(array, max_pixels=48).shape == (1, 3, 6, 8)
    with pytest.raises(PayloadError, match="image 0 has 8x6 = 48 pixels, over the limit of 47"):
        photo_pixels(photo, 0, 4, max_pixels=47)
    with pytest.raises(PayloadError, match="the images have 8x6 = 48 pixels, over the limit of 47"):
        array_pixels(array, max_pixels=47)


def test_the_code_of_versions_registered_before_still_imports():
    """A registered version carries its own copy of stages/tracking/served_model.py, which MLflow runs as it was
    logged; the copies logged by earlier releases import these names from csra.deploy.serving, and a version that
    cannot import them no longer loads, nor serves, nor is exported again."""
    from csra.deploy.serving import (  # the line of the copies logged before (decoding moved to csra.deploy.photos)
        CONTRACT_ARTIFACT,
        IMAGE_COLUMN,
        PROGRAM_ARTIFACT,
        ImageScorer,
        PayloadError,
        refused,
    )

    assert (IMAGE_COLUMN, PROGRAM_ARTIFACT, CONTRACT_ARTIFACT) == ("image", "program", "contract")
    assert isinstance(refused("why"), PayloadError) and str(refused("why")) == f"why: {CONTRACT}"
    assert callable(ImageScorer.score_base64)
