import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from csra.data.loading import (
    MultiLabelDataset,
    auto_workers,
    build_transform,
    collate_readable,
    list_images,
    load_image,
    make_loader,
    normalize_batch,
)
from csra.errors import CSRAError
from csra.model.network import ModelConfig

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


def test_test_transform_resizes_and_batches_scale_to_unit_range(tmp_path):
    item = {"img_path": str(jpeg(tmp_path / "a.jpg")), "target": [1, 0, -1]}
    image, target = MultiLabelDataset([item], CONFIG, train=False)[0]
    assert image.shape == (3, 48, 48) and image.dtype == torch.uint8
    batch = normalize_batch(image[None], CONFIG)
    assert batch.dtype == torch.float32
    assert batch[0, 0].mean() > 0.95 and batch[0, 1].mean() < 0.05  # red, pixels in [0, 1] (ResNet: mean 0, std 1)
    assert target.tolist() == [1.0, 0.0, -1.0]


@pytest.mark.parametrize("stats", [((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_normalize_batch_equals_torchvision_per_image(stats):
    images = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    config = dataclasses.replace(CONFIG, mean=stats[0], std=stats[1])
    reference = torch.stack([v2.Normalize(list(config.mean), list(config.std))(
        v2.ToDtype(torch.float32, scale=True)(image)) for image in images])
    assert torch.equal(normalize_batch(images, config), reference)


def test_person_crop_is_the_box_with_zeros_outside(tmp_path):
    pixels = np.zeros((20, 30, 3), dtype=np.uint8)
    pixels[5:15, 10:20] = 200
    Image.fromarray(pixels).save(tmp_path / "p.png")
    crop = load_image(tmp_path / "p.png", box=(10, 5, 20, 15))
    assert crop.shape == (3, 10, 10) and bool((crop == 200).all())
    assert load_image(tmp_path / "p.png", box=(25, 0, 35, 10))[:, :, 5:].sum() == 0  # past the right edge
    item = {"img_path": str(tmp_path / "p.png"), "bbox": [10, 5, 10, 10], "target": [1, 0, 0]}
    image, _ = MultiLabelDataset([item], CONFIG, train=True)[0]
    assert image.shape == (3, 48, 48) and bool((image == 200).all())  # flip + resize only, no random crop


def test_large_jpeg_decodes_at_a_reduced_scale(tmp_path):
    path = jpeg(tmp_path / "big.jpg", size=(400, 200))
    assert load_image(path, min_size=48).shape == (3, 50, 100)  # 1/4 keeps both sides >= 48
    assert load_image(path, min_size=150).shape == (3, 200, 400)  # 1/2 would give 100 px
    assert load_image(path, box=(0, 0, 100, 100), min_size=48).shape == (3, 50, 50)  # the box, at 1/2


def test_unreadable_images_are_skipped_when_asked(tmp_path, caplog):
    (tmp_path / "bad.jpg").write_text("no image")
    items = [{"img_path": str(tmp_path / "bad.jpg"), "target": [1, 0, 0]},
             {"img_path": str(jpeg(tmp_path / "a.jpg")), "target": [0, 1, 0]}]
    with pytest.raises(CSRAError, match="bad.jpg: cannot read image"):
        MultiLabelDataset(items, CONFIG, train=False)[0]
    dataset = MultiLabelDataset(items, CONFIG, train=False, skip_bad=True)
    images, targets = collate_readable([dataset[0], dataset[1], dataset[0]])
    assert images.shape == (1, 3, 48, 48) and targets.tolist() == [[0, 1, 0]]
    assert [r.getMessage() for r in caplog.records] == [f"warning: {tmp_path}/bad.jpg: cannot read image "
                                                        "(not a JPEG, PNG or other format PIL decodes); skipped"]
    assert collate_readable([None, None]) is None


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


@pytest.mark.parametrize("cores, processes, device, workers", [
    (2, 1, "cpu", 0),     # this machine: the model needs both cores
    (16, 1, "cpu", 4),    # a quarter of the cores decode, the model keeps the rest
    (2, 1, "cuda", 1),    # one core for the main process, the rest decode for the GPU
    (16, 1, "cuda", 15),
    (64, 1, "cuda", 16),  # capped
    (64, 8, "cuda", 7),   # 8 GPUs under torchrun share the 64 cores
    (4, 8, "cuda", 0),    # fewer cores than processes: the main process loads
    (1, 1, "cpu", 0),
])
def test_auto_workers_shares_the_cores_of_this_process(cores, processes, device, workers):
    assert auto_workers(cores, processes, device) == workers


def test_loaders_pin_and_prefetch_for_a_gpu_only(tmp_path):
    items = [{"img_path": str(jpeg(tmp_path / "a.jpg")), "target": [1, 0, 0]}]
    cuda = make_loader(items, CONFIG, False, 1, 2, device_type="cuda")
    assert cuda.pin_memory and cuda.prefetch_factor == 4 and cuda.persistent_workers
    cpu = make_loader(items, CONFIG, False, 1, 0, device_type="cpu")
    assert not cpu.pin_memory and not cpu.persistent_workers
