"""How far our test-time scores are from the official evaluation's, on random-weight ResNet-101 (448 px) and
ViT-B/16 (224 px) models and photo-like JPEGs of several sizes (large ones included).

    python bench/bench_official_parity.py [--images N] [--models resnet101:448,vit_b16_224:224]

For each model it scores the same images three ways with the same weights: (a) our one prediction path
(csra.evaluate.predict: PIL decode, PIL bilinear resize, ToTensor's division, the model in float32); (b) the
official preprocessing written from the official code (tests/official.py's official_test_images: torchvision's v1
Resize((s, s)) on the PIL image, ToTensor, Normalize); (c) the uint8 resize our pipeline used before (torchvision
v2 Resize with antialias on a JPEG decoded at a reduced scale). It prints the largest |score difference| of (a)
and (c) against (b). Not a test.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms import v2

from csra.data.loading import load_image, normalize_batch
from csra.data.synthetic import render_image
from csra.evaluate.predict import predict
from csra.model.network import ModelConfig, build_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # run as `python bench/...`: the tests' copy
from official import official_test_images  # noqa: E402  (the official test-time input, written from its code)

SIZES = [(500, 375), (375, 500), (1024, 768), (4000, 3000), (300, 200), (640, 480)]  # width, height


def photos(folder: Path, count: int) -> list[Path]:
    """Scenes of the built-in dataset rendered at photo sizes, saved as JPEG (quality 90)."""
    paths = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        image, _ = render_image(np.random.default_rng(i), width, height)
        paths.append(folder / f"{i:04d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def random_model(name: str, img_size: int, classes: int = 20) -> torch.nn.Module:
    """torchvision's random initialisation, in eval mode; a ResNet's residual branches are halved, else its random
    features grow so large that every score is 0 or 1 and no difference shows."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.create(name, classes, 1, 0.1, img_size)).eval()
    with torch.no_grad():
        for module in model.backbone.modules():
            if hasattr(module, "bn3"):
                module.bn3.weight.mul_(0.5)
    return model


@torch.no_grad()
def official(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    c = model.config
    return np.concatenate([torch.sigmoid(model(official_test_images([p], c.img_size, c.mean, c.std))).numpy()
                           for p in paths])


@torch.no_grad()
def previous(model: torch.nn.Module, paths: list[Path]) -> np.ndarray:
    c = model.config
    resize = v2.Resize((c.img_size, c.img_size), antialias=True)
    return np.concatenate([torch.sigmoid(model(normalize_batch(resize(load_image(p, None, c.img_size))[None], c)))
                           .numpy() for p in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--models", default="resnet101:448,vit_b16_224:224")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        paths = photos(Path(tmp), args.images)
        items = [{"img_path": str(p), "target": [0] * 20} for p in paths]
        print(f"{args.images} photo-like JPEGs ({', '.join(f'{w}x{h}' for w, h in SIZES[:args.images])}); "
              "largest |score - official score|:")
        for spec in args.models.split(","):
            name, size = spec.split(":")
            model = random_model(name, int(size))
            reference = official(model, paths)
            ours = predict(model, items, model.config, 4, 0, torch.device("cpu")).scores
            spread = float(np.median(np.abs(reference - 0.5)))
            print(f"  {name} @ {size}: ours {np.abs(ours - reference).max():.1e}   previous uint8 resize "
                  f"{np.abs(previous(model, paths) - reference).max():.1e}   (median |score - 0.5| "
                  f"{spread:.2f}{', saturated' if math.isclose(spread, 0.5, abs_tol=1e-3) else ''})")


if __name__ == "__main__":
    main()
