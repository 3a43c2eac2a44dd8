"""Class score maps peak where a planted object is; overlays, contact sheets and the heatmap folder."""

import numpy as np
import torch
from PIL import Image
from torch import nn

from csra.deploy.heatmaps import (
    DISPLAY_SIDE,
    class_score_maps,
    image_keys,
    image_score_maps,
    overlay,
    write_heatmaps,
)
from csra.model.heads import GAPHead, MultiHeadCSRA
from csra.model.network import ModelConfig, build_model

COLOURS = torch.tensor([[1.0, -0.5, -0.5], [-0.5, 1.0, -0.5], [-0.5, -0.5, 1.0]])  # red, green, blue detectors
SQUARE = (slice(8, 20), slice(40, 52))  # rows, cols of the planted object in a 48 x 64 image


def colour_model(num_heads=2):
    """A CSRA model whose 'backbone' averages 4 x 4 pixel blocks, with heads that respond to red, green, blue."""
    model = build_model(ModelConfig.create("resnet18", 3, num_heads=num_heads, lam=0.1, img_size=32)).eval()
    model.backbone = nn.AvgPool2d(4)
    model.classifier = MultiHeadCSRA(3, 3, num_heads, 0.1)
    for h, head in enumerate(model.classifier.multi_head):
        head.head.weight.data = (COLOURS * (h + 1)).view(3, 3, 1, 1).clone()
    return model


def gap_colour_model():
    """The GAP baseline on the same block-averaging 'backbone', its linear classifier the colour detectors."""
    model = build_model(ModelConfig.create("resnet18", 3, 1, 0.1, img_size=32, head="gap")).eval()
    model.backbone = nn.AvgPool2d(4)
    model.classifier = GAPHead(3, 3)
    model.classifier.fc.weight.data = COLOURS.clone()
    model.classifier.fc.bias.data = torch.tensor([0.5, -1.0, 0.0])
    return model


def planted_image(scale=1):
    """A grey 48 x 64 image (times scale) with a red square at SQUARE (times scale)."""
    image = torch.full((3, 48 * scale, 64 * scale), 128, dtype=torch.uint8)
    rows, cols = (slice(s.start * scale, s.stop * scale) for s in SQUARE)
    image[:, rows, cols] = torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1)
    return image


def assert_on_square(row, col, shrink=1.0):
    """(row, col) of a display-sized picture falls on the planted square (shrink: display size / SQUARE's image)."""
    rows, cols = ((s.start * shrink, s.stop * shrink) for s in SQUARE)
    assert rows[0] <= row < rows[1] and cols[0] <= col < cols[1], (row, col)


def test_the_red_class_map_peaks_on_the_planted_red_square():
    maps = image_score_maps(colour_model(), planted_image())
    assert maps.shape == (3, 48, 64)  # a small image keeps its size
    for c, pick in ((0, torch.argmax), (1, torch.argmin), (2, torch.argmin)):
        assert_on_square(*divmod(int(pick(maps[c])), 64))
    assert maps[0, 0, 0].abs() < 1e-5  # grey background: no colour evidence


def test_the_gap_baselines_map_is_its_class_activation_map_and_peaks_on_the_square():
    model = gap_colour_model()
    maps = image_score_maps(model, planted_image())
    assert_on_square(*divmod(int(torch.argmax(maps[0])), 64))
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(class_score_maps(model, x).mean((2, 3)), model(x), atol=1e-6)  # its mean: the logit


def test_maps_of_a_large_image_are_at_the_display_size_and_still_peak_on_the_square():
    maps = image_score_maps(colour_model(), planted_image(scale=50))  # 2400 x 3200
    assert DISPLAY_SIDE == 1024 and maps.shape == (3, 768, 1024)
    assert_on_square(*divmod(int(torch.argmax(maps[0])), 1024), shrink=768 / 48)


def test_score_map_is_the_sum_over_heads_of_the_normalised_1x1_conv():
    model = colour_model(num_heads=4)
    x = torch.rand(2, 3, 32, 32)
    features = nn.AvgPool2d(4)(x)
    expected = torch.zeros(2, 3, 8, 8)
    for head in model.classifier.multi_head:
        weight = head.head.weight.view(3, 3)
        expected += torch.einsum("kc,bchw->bkhw", weight / weight.norm(dim=1, keepdim=True), features)
    maps = class_score_maps(model, x)
    assert torch.allclose(maps, expected, atol=1e-6)
    base = sum(head.score_map(features).flatten(2).mean(2) for head in model.classifier.multi_head)
    assert torch.allclose(maps.mean((2, 3)), base, atol=1e-6)  # mean pooling of the map = the heads' mean logits


def test_overlay_colours_the_peak_red_and_the_minimum_blue():
    image = torch.zeros(3, 4, 5, dtype=torch.uint8)
    score_map = torch.zeros(4, 5)
    score_map[1, 2] = 3.0
    pixels = overlay(image, score_map, alpha=0.5)
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[1, 2]) == (64, 0, 0)  # jet(1) = dark red (0.5, 0, 0), half of it
    assert tuple(pixels[0, 0]) == (0, 0, 64)  # jet(0) = dark blue
    assert (overlay(image, torch.ones(4, 5)) == pixels[0, 0]).all()  # a flat map has no peak


def test_write_heatmaps_one_png_per_predicted_class_and_a_sheet_per_image(tmp_path):
    Image.fromarray(planted_image().permute(1, 2, 0).numpy()).save(tmp_path / "red.png")
    Image.new("RGB", (30, 20), "grey").save(tmp_path / "grey.jpg")
    out = tmp_path / "heatmaps"
    (out / "stale").mkdir(parents=True)
    classes = ["red", "green", "blue"]
    predictions = [(tmp_path / "red.png", [0.9, 0.1, 0.2], ["red"]), (tmp_path / "grey.jpg", [0.1, 0.1, 0.1], [])]
    sheets = write_heatmaps(colour_model(), predictions, classes, out)
    assert sheets == [out / "red.png", out / "grey.png"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["grey.png", "red.png", "red/red.png"]
    with Image.open(out / "red" / "red.png") as heat:
        assert heat.size == (64, 48) and heat.mode == "RGB"
        assert heat.getpixel((45, 14))[0] > heat.getpixel((5, 40))[0]  # red where the square is
    with Image.open(out / "red.png") as sheet:
        assert sheet.size[0] > sheet.size[1]  # the image and one panel side by side


def test_a_large_jpeg_gives_display_sized_pngs_with_red_on_the_square(tmp_path):
    Image.fromarray(planted_image(scale=50).permute(1, 2, 0).numpy()).save(tmp_path / "big.jpg", quality=95)
    sheets = write_heatmaps(colour_model(), [(tmp_path / "big.jpg", [0.9, 0.1, 0.1], ["red"])],
                            ["red", "green", "blue"], tmp_path / "out")
    with Image.open(tmp_path / "out" / "big" / "red.png") as heat:
        assert heat.size == (1024, 768)
        pixels = np.asarray(heat).astype(int)
        assert_on_square(*divmod(int(np.argmax(pixels[..., 0] - pixels[..., 2])), 1024), shrink=768 / 48)
    with Image.open(sheets[0]) as sheet:
        assert max(sheet.size) < 2 * 320 + 40  # the image and its panel, tiles of at most 320 pixels


def test_image_keys_keep_stems_unless_they_collide(tmp_path):
    names = [tmp_path / n for n in ("a.jpg", "a.png", "b.jpg")]
    assert image_keys(names) == ["a_jpg", "a_png", "b"]
