"""Deployable forms of a model, raw uint8 images in and class scores out: a torch.export program and ONNX."""

from __future__ import annotations

import importlib
import io
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.export import Dim, ExportedProgram

from csra.data.loading import normalize_batch, test_pixels
from csra.data.synthetic import render_image
from csra.deploy.photos import ARRAYS, PHOTOS
from csra.deploy.scoring import ScoringModel
from csra.errors import CSRAError, first_line
from csra.fileio import atomic_write
from csra.model.network import CSRAModel

PARITY_TOLERANCE = 1e-4
INPUT_NAME, OUTPUT_NAME = "images", "scores"
PROGRAM_FILE, ONNX_FILE = "model.pt2", "model.onnx"
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")  # torch's dynamo exporter needs the first two; parity the last
# Batch, height and width stay free; the exporter specialises a dimension only where the model needs it to.
DYNAMIC_SHAPES = ({0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO},)


def example_images(img_size: int, seed: int) -> torch.Tensor:
    """Random uint8 images (2, 3, img_size, img_size + 8) to trace with: batch > 1 and H ≠ W keep those dims free."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 3, img_size, img_size + 8), dtype=torch.uint8, generator=generator)


# Photo-like parity images (height, width): VOC-sized both ways, a large one, a small one (upscaled), a tall one.
PHOTO_SIZES = ((375, 500), (500, 333), (768, 1024), (48, 64), (900, 240))


def parity_images(img_size: int, seed: int) -> list[torch.Tensor]:
    """Fresh uint8 batches of other sizes than the traced example: random noise (one image, and three
    non-square ones), then one photo-like JPEG per PHOTO_SIZES (the built-in dataset's scenes, JPEG-compressed)."""
    generator = torch.Generator().manual_seed(seed + 1)
    shapes = [(1, 3, img_size, img_size), (3, 3, img_size + 13, 2 * img_size - 5)]
    noise = [torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator) for shape in shapes]
    return noise + [photo_like(h, w, seed + k)[None] for k, (h, w) in enumerate(PHOTO_SIZES)]


def photo_like(height: int, width: int, seed: int) -> torch.Tensor:
    """A real-looking uint8 image (3, height, width): a scene of the built-in dataset, saved and read as JPEG."""
    return decode_rgb(photo_file(height, width, seed, "JPEG"))


def photo_file(height: int, width: int, seed: int, file_format: str) -> bytes:
    """The bytes of a photo-like image file (a scene of the built-in dataset) in a format PIL writes."""
    image, _ = render_image(np.random.default_rng(seed), width, height)
    buffer = io.BytesIO()
    image.save(buffer, format=file_format, **({"quality": 90} if file_format in ("JPEG", "WEBP") else {}))
    return buffer.getvalue()


def decode_rgb(data: bytes) -> torch.Tensor:
    """An image file's pixels as PIL decodes them, uint8 RGB (3, H, W)."""
    with Image.open(io.BytesIO(data)) as image:
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()


# Photo files the served model's parity is checked on: (height, width, format), three formats and several sizes.
PHOTO_FILES = ((375, 500, "JPEG"), (333, 500, "PNG"), (480, 640, "WEBP"), (48, 64, "JPEG"), (900, 240, "BMP"))


def parity_photos(seed: int) -> list[bytes]:
    """Fresh photo files (PHOTO_FILES) for the served path's parity check."""
    return [photo_file(h, w, seed + 100 + k, fmt) for k, (h, w, fmt) in enumerate(PHOTO_FILES)]


@torch.no_grad()
def photo_difference(model: CSRAModel, served: Callable[[list[bytes]], np.ndarray], photos: list[bytes]) -> float:
    """The largest absolute difference between the scores a served model gives photo files (their bytes) and the
    eager path of evaluate and demo on the same files."""
    eager = torch.cat([eager_scores(model, decode_rgb(data)[None]) for data in photos])
    return float((torch.tensor(np.asarray(served(photos), dtype=np.float32)) - eager).abs().max())


@torch.no_grad()
def eager_scores(model: CSRAModel, images: torch.Tensor) -> torch.Tensor:
    """Scores of a uint8 batch through the eager test-time path of evaluate and demo (PIL's resize itself)."""
    pixels = torch.stack([test_pixels(Image.fromarray(x.permute(1, 2, 0).numpy()), model.config.img_size)
                          for x in images])
    return torch.sigmoid(model.eval()(normalize_batch(pixels, model.config)))


def export_program(scoring: ScoringModel, example: torch.Tensor) -> ExportedProgram:
    """The scoring module (preprocessing included) as a torch.export program."""
    return torch.export.export(scoring.eval(), (example,), dynamic_shapes=DYNAMIC_SHAPES)


def program_bytes(program: ExportedProgram) -> bytes:
    """The program as a .pt2 archive, made in memory (torch's archive writer aborts the process when a disk fills
    under it; a Python write of these bytes is a clean error)."""
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    return buffer.getvalue()


def load_program(source: Path | bytes) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable over uint8 image batches from a .pt2 file or its bytes."""
    return torch.export.load(io.BytesIO(source) if isinstance(source, bytes) else source).module()


def require_onnx() -> None:
    """ONNX is opt-in, its packages are the `export` extra: a CSRAError naming the extra when one is missing."""
    for name in ONNX_MODULES:
        try:
            importlib.import_module(name)
        except ImportError as e:
            reason = first_line(e)
            raise CSRAError(f"ONNX export (export.onnx, --onnx) needs the export extra: {name} cannot be imported "
                            f"({reason}); install it with pip install 'csra[export]'") from None


def export_onnx(program: ExportedProgram, path: Path) -> Path:
    """An exported program as an ONNX file (torch's dynamo exporter), input 'images', output 'scores'."""
    require_onnx()
    onnx_program = torch.onnx.export(
        program, dynamo=True, verbose=False, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME]
    )
    model = onnx_program.model_proto
    for graph in [model.graph, *model.functions]:
        _drop_debug_info(graph)
    data = model.SerializeToString()  # in memory, then a Python write (see save_program)
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _drop_debug_info(graph: Any) -> None:
    """Remove what the exporter notes per node for debugging (the Python stack trace with this machine's absolute
    paths, FX node names with process-wide counters), here and in subgraphs, so that the same model gives the same
    ONNX bytes anywhere."""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else []:
                _drop_debug_info(subgraph)
            for subgraph in attribute.graphs:
                _drop_debug_info(subgraph)


def onnx_runner(path: Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable over uint8 image batches that runs an ONNX file with onnxruntime on the CPU."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> torch.Tensor:
        (scores,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
        return torch.from_numpy(scores)

    return run


@torch.no_grad()
def max_difference(
    reference: Callable[[torch.Tensor], torch.Tensor], candidate: Callable[[torch.Tensor], torch.Tensor],
    batches: list[torch.Tensor],
) -> float:
    """The largest absolute score difference between two scorers over the batches."""
    return max(float((reference(x) - candidate(x)).abs().max()) for x in batches)


def write_exports(scoring: ScoringModel, folder: Path, seed: int, onnx: bool) -> tuple[ExportedProgram, dict]:
    """The torch.export program of the scoring module (serialised and read back in memory) and, with onnx,
    folder/model.onnx; returns the program and each form's largest score difference from the eager path of
    evaluate and demo (PIL's resize) on fresh noise and photo-like images, and raises a CSRAError if one exceeds
    PARITY_TOLERANCE (or at once, before any work, when onnx and the export extra is missing)."""
    if onnx:
        require_onnx()
    img_size = scoring.model.config.img_size
    program = export_program(scoring, example_images(img_size, seed))
    batches = parity_images(img_size, seed)
    runners = {PROGRAM_FILE: load_program(program_bytes(program))}
    if onnx:
        runners[ONNX_FILE] = onnx_runner(export_onnx(program, folder / ONNX_FILE))
    reference = partial(eager_scores, scoring.model)
    return program, check_parity({name: max_difference(reference, runner, batches)
                                  for name, runner in runners.items()})


def write_onnx_of(program: ExportedProgram, folder: Path, img_size: int, seed: int) -> dict[str, float]:
    """folder/model.onnx of an exported program (a registered model's, whose eager model is not at hand), and its
    largest score difference from the program itself on fresh images; a CSRAError beyond PARITY_TOLERANCE."""
    runner = onnx_runner(export_onnx(program, folder / ONNX_FILE))
    return check_parity({ONNX_FILE: max_difference(program.module(), runner, parity_images(img_size, seed))})


def check_parity(parity: dict[str, float]) -> dict[str, float]:
    """The differences unchanged, or a CSRAError naming the first form beyond PARITY_TOLERANCE."""
    for name, error in parity.items():
        if error > PARITY_TOLERANCE:
            raise CSRAError(f"{name}: scores differ from the eager model by {error:.2e} > {PARITY_TOLERANCE}")
    return parity


def input_contract(scoring: ScoringModel, classes: list[str], max_pixels: int) -> dict[str, Any]:
    """What a consumer of an exported form sends and gets back, written next to it. The program and ONNX take
    pixels; the registered model takes photo files too (csra.deploy.serving)."""
    config = scoring.model.config
    return {
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", 3, "height", "width"],
                  "layout": "RGB channels first, values 0-255, any height and width"},
        "served": {"photos": PHOTOS, "arrays": ARRAYS, "max_pixels": max_pixels,
                   "answer": "one record per image: the score of every class, named, in the order of output.classes"},
        "preprocessing": {"resize": [config.img_size, config.img_size],
                          "interpolation": "PIL bilinear (Image.resize), bit for bit",
                          "scale": "1/255", "mean": list(config.mean), "std": list(config.std)},
        "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", len(classes)],
                   "meaning": "sigmoid score per class", "classes": list(classes)},
    }

