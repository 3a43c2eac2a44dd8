import io

import pytest
import torch
from PIL import Image

from csra.data.datasets import MultiLabelDataset, build_transform, list_images, load_image
from csra.errors import CSRAError
from csra.model import ModelConfig

CONFIG = ModelConfig.create("resnet18", 3, 1, 0.1, 48)


def jpeg(path, size=(80, 60), colour=(255, 0, 0)):
    Image.new("RGB", size, colour).save(path, quality=95)
    return path


def test_load_image_is_uint8_rgb_chw(tmp_path):
    Image.new("L", (20, 10), 128).save(tmp_path / "grey.png")
    image = load_image(tmp_path / "grey.png")
    assert image.dtype == torch.uint8 and image.shape == (3, 10, 20)


def test_unreadable_and_truncated_images_name_the_file(tmp_path):
    (tmp_path / "text.jpg").write_text("no image")
    buffer = io.BytesIO()
    Image.new("RGB", (200, 200), "blue").save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[:300])
    for name in ("text.jpg", "cut.jpg"):
        with pytest.raises(CSRAError, match=f"{name}: cannot read image"):
            load_image(tmp_path / name)


def test_test_transform_resizes_and_scales_to_unit_range(tmp_path):
    item = {"img_path": str(jpeg(tmp_path / "a.jpg")), "target": [1, 0, -1]}
    image, target = MultiLabelDataset([item], build_transform(CONFIG, train=False))[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.float32
    assert image[0].mean() > 0.95 and image[1].mean() < 0.05  # red, pixels in [0, 1] (ResNet: mean 0, std 1)
    assert target.tolist() == [1.0, 0.0, -1.0]


def test_train_transform_gives_square_crops(tmp_path):
    torch.manual_seed(0)
    transform = build_transform(CONFIG, train=True)
    image = load_image(jpeg(tmp_path / "a.jpg", size=(120, 40)))
    assert {tuple(transform(image).shape) for _ in range(5)} == {(3, 48, 48)}


def test_list_images(tmp_path):
    with pytest.raises(CSRAError, match="no JPEG or PNG images"):
        list_images(tmp_path)
    jpeg(tmp_path / "b.JPG")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]
