"""The built-in dataset: coloured shapes on clutter, generated from a seed, written in the Pascal VOC2007 layout.

Several classes per image, object sizes from tiny to large, grey distractors and occluding bars; tiny or mostly
hidden instances are marked difficult, exactly as VOC annotators do. The class list travels as classes.txt.
"""

from __future__ import annotations

import colorsys
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from csra.data.datasets import SYNTHETIC_CLASSES as CLASSES
from csra.data.formats import CLASSES_FILE, write_classes
from csra.fileio import atomic_dir
from csra.settings import check_fields, setting

DIFFICULT_SIZE = 10  # px: an instance whose visible box is smaller on both sides is difficult
DIFFICULT_VISIBLE = 0.3  # an instance with less of its area visible is difficult
HIDDEN_VISIBLE = 0.05  # an instance with less visible is not annotated at all


@dataclass(frozen=True)
class SyntheticSpec:
    """How much of the built-in dataset to generate, at what image size, from which seed."""

    seed: int = setting(min=0)
    num_trainval: int = setting(min=2)
    num_test: int = setting(min=1)
    num_demo: int = setting(min=0)
    width: int = setting(min=16)
    height: int = setting(min=16)

    def __post_init__(self) -> None:
        check_fields(self)


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of a shape of radius r around (cx, cy), rotated by angle (radians)."""
    if kind in ("square", "triangle", "hexagon"):
        n = {"square": 4, "triangle": 3, "hexagon": 6}[kind]
        pts = [(math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n)]
    elif kind == "diamond":
        pts = [(1, 0), (0, 0.55), (-1, 0), (0, -0.55)]
    elif kind == "star":
        pts = [
            ((1.0 if k % 2 == 0 else 0.42) * math.cos(math.pi * k / 5), (1.0 if k % 2 == 0 else 0.42)
             * math.sin(math.pi * k / 5))
            for k in range(10)
        ]
    elif kind == "cross":
        a, b = 1.0, 0.33
        pts = [(b, a), (b, b), (a, b), (a, -b), (b, -b), (b, -a), (-b, -a), (-b, -b), (-a, -b), (-a, b), (-b, b),
               (-b, a)]  # fmt: skip
    elif kind == "arrow":
        pts = [(1, 0), (0.2, 0.7), (0.2, 0.28), (-1, 0.28), (-1, -0.28), (0.2, -0.28), (0.2, -0.7)]
    else:
        raise ValueError(kind)
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in pts]


def _shape_mask(kind: str, size: tuple[int, int], cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    box = (cx - r, cy - r, cx + r, cy + r)
    if kind == "circle":
        draw.ellipse(box, fill=255)
    elif kind == "ring":
        draw.ellipse(box, outline=255, width=max(2, round(r * 0.35)))
    elif kind == "crescent":
        draw.ellipse(box, fill=255)
        dx, dy = 0.45 * r * math.cos(angle), 0.45 * r * math.sin(angle)
        draw.ellipse((box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy), fill=0)
    else:
        draw.polygon(_polygon(kind, cx, cy, r, angle), fill=255)
    return np.asarray(mask) > 127


def _colour(rng: np.random.Generator, hue: float, saturation: tuple[float, float]) -> np.ndarray:
    h = (hue + rng.uniform(-0.025, 0.025)) % 1.0
    rgb = colorsys.hsv_to_rgb(h, rng.uniform(*saturation), rng.uniform(0.65, 1.0))
    return np.array(rgb) * 255


def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A low-saturation gradient with grey distractor blobs and lines (clutter that belongs to no class)."""
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    base = rng.uniform(70, 170) + rng.uniform(-25, 25, size=3)
    slope = rng.uniform(-50, 50, size=(2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(2, 7))):
        grey = int(rng.uniform(40, 220))
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 0.12 * min(w, h))
        if rng.random() < 0.5:
            draw.ellipse((x - r, y - r * rng.uniform(0.4, 1), x + r, y + r), fill=(grey,) * 3)
        else:
            draw.line((x, y, rng.uniform(0, w), rng.uniform(0, h)), fill=(grey,) * 3, width=int(rng.integers(1, 4)))
    return np.asarray(canvas).astype(np.float64)


def render_image(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, list[dict]]:
    """One image and its objects: {name, difficult, bbox (1-based VOC xmin, ymin, xmax, ymax)}."""
    img = _background(rng, w, h)
    num_classes = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
    chosen = rng.choice(len(CLASSES), size=num_classes, replace=False)
    instances = [int(c) for c in chosen for _ in range(int(rng.choice([1, 2], p=[0.75, 0.25])))]
    rng.shuffle(instances)
    masks, labels = [], []
    for c in instances:
        r = 0.5 * min(w, h) * math.exp(rng.uniform(math.log(0.1), math.log(0.5)))
        cx, cy = rng.uniform(r * 0.6, w - r * 0.6), rng.uniform(r * 0.6, h - r * 0.6)
        mask = _shape_mask(CLASSES[c], (w, h), cx, cy, r, rng.uniform(0, 2 * math.pi))
        img[mask] = _colour(rng, c / len(CLASSES), (0.55, 1.0))
        masks.append(mask)
        labels.append(c)
    for _ in range(int(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15]))):  # occluding grey bars
        bar = Image.new("L", (w, h), 0)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        ImageDraw.Draw(bar).line((x, y, rng.uniform(0, w), rng.uniform(0, h)), fill=255,
                                 width=int(rng.integers(4, 0.15 * min(w, h))))
        bar_mask = np.asarray(bar) > 127
        img[bar_mask] = rng.uniform(70, 200)
        masks.append(bar_mask)
        labels.append(-1)
    objects = []
    for k, (mask, c) in enumerate(zip(masks, labels)):
        if c < 0 or not mask.any():
            continue
        visible = mask & ~np.logical_or.reduce(masks[k + 1:] or [np.zeros_like(mask)])
        fraction = visible.sum() / mask.sum()
        if fraction < HIDDEN_VISIBLE:
            continue
        ys, xs = np.nonzero(visible)
        bw, bh = xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        difficult = bool(fraction < DIFFICULT_VISIBLE or max(bw, bh) < DIFFICULT_SIZE)
        bbox = (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append({"name": CLASSES[c], "difficult": difficult, "bbox": bbox})
    img += rng.normal(0, 6, size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)), objects


def _voc_xml(image_id: str, w: int, h: int, objects: list[dict]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2007"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "CSRA synthetic shapes"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for obj in objects:
        node = ET.SubElement(root, "object")
        ET.SubElement(node, "name").text = obj["name"]
        ET.SubElement(node, "pose").text = "Unspecified"
        ET.SubElement(node, "truncated").text = "0"
        ET.SubElement(node, "difficult").text = str(int(obj["difficult"]))
        box = ET.SubElement(node, "bndbox")
        for tag, value in zip(("xmin", "ymin", "xmax", "ymax"), obj["bbox"]):
            ET.SubElement(box, tag).text = str(value)
    ET.indent(root)
    return ET.ElementTree(root)


def generate_synthetic(root: str | Path, spec: SyntheticSpec) -> Path:
    """Write the dataset under root (root/VOC2007/…, root/demo/, root/classes.txt), replacing it whole."""
    total = spec.num_trainval + spec.num_test
    ids = [f"{i:06d}" for i in range(1, total + 1)]
    order = np.random.default_rng([spec.seed, 0]).permutation(total)
    test = sorted(ids[i] for i in order[: spec.num_test])
    trainval = sorted(ids[i] for i in order[spec.num_test:])
    with atomic_dir(root) as tmp:
        voc = tmp / "VOC2007"
        for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
            (voc / sub).mkdir(parents=True)
        for index, image_id in enumerate(ids, start=1):
            image, objects = render_image(np.random.default_rng([spec.seed, index]), spec.width, spec.height)
            image.save(voc / "JPEGImages" / f"{image_id}.jpg", quality=90)
            _voc_xml(image_id, spec.width, spec.height, objects).write(voc / "Annotations" / f"{image_id}.xml")
        val = trainval[4::5]  # a fifth of trainval: the held-out selection split
        split = {"train": sorted(set(trainval) - set(val)), "val": val, "trainval": trainval, "test": test}
        for name, members in split.items():
            (voc / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{m}\n" for m in members))
        demo = tmp / "demo"
        demo.mkdir()
        for k in range(spec.num_demo):
            image, _ = render_image(np.random.default_rng([spec.seed, total + 1 + k]), spec.width, spec.height)
            image.save(demo / f"demo_{k:02d}.{'png' if k % 4 == 3 else 'jpg'}")
        write_classes(tmp / CLASSES_FILE, CLASSES)
    return Path(root)
