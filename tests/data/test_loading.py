"""Loading: decoding, the official train and test geometry (observed on an image whose pixels hold their own
coordinates), each image's augmentation seeded by (seed, epoch, index), and the float conversion per batch."""

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from csra.data.loading import (
    MultiLabelDataset,
    auto_workers,
    build_transform,
    collate_readable,
    list_images,
    load_image,
    load_test_image,
    make_loader,
    normalize_batch,
    person_box,
)
from csra.distributed import SINGLE, DistContext, EpochSampler
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


@pytest.mark.parametrize("stats", [((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)), ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))])
def test_test_time_pixels_are_the_official_ones_exactly(tmp_path, stats):
    """Decode, PIL bilinear resize, ToTensor and Normalize of the official code (ResNet and ViT statistics), bit for
    bit: large, small, non-square images and a WIDER person crop."""
    from official import official_test_images

    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(500, 375), (37, 90), (1200, 900), (64, 64)]):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1], quality=85)
    config = dataclasses.replace(CONFIG, mean=stats[0], std=stats[1])
    ours = normalize_batch(torch.stack([load_test_image(p, 48) for p in paths]), config)
    assert torch.equal(ours, official_test_images(paths, 48, *stats))
    box = [10.5, 20, 200, 150]  # x, y, w, h as WIDER gives it
    crop = normalize_batch(load_test_image(paths[0], 48, person_box(box))[None], config)
    assert torch.equal(crop, official_test_images(paths[:1], 48, *stats, boxes=[box]))


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
    images, targets, indices, skipped = collate_readable([dataset[0], dataset[1], dataset[0]])
    assert images.shape == (1, 3, 48, 48) and targets.tolist() == [[0, 1, 0]] and indices is None
    assert [r.getMessage() for r in caplog.records] == [f"warning: {tmp_path}/bad.jpg: cannot read image "
                                                        "(not a JPEG, PNG or other format PIL decodes); skipped"]
    assert collate_readable([None, None]) == (None, None, None, [])


def test_a_loader_process_gives_back_the_indices_of_the_images_it_skipped(tmp_path):
    """An undecodable image met in a worker process comes back as its item index in the batch's skipped list,
    also in a batch where nothing could be read; the readable ones come as before."""
    (tmp_path / "bad.jpg").write_text("no image")
    good, bad = str(jpeg(tmp_path / "a.jpg")), str(tmp_path / "bad.jpg")
    items = [{"img_path": path, "target": [1, 0, 0]} for path in (good, bad, good, bad, bad)]
    batches = list(make_loader(items, CONFIG, True, 2, 1, skip_bad=True))  # batches of items 0-1, 2-3, 4
    assert [batch.skipped for batch in batches] == [[1], [3], [4]]
    assert [None if b.images is None else b.indices.tolist() for b in batches] == [[0], [2], None]


def test_train_transform_gives_square_crops(tmp_path):
    torch.manual_seed(0)
    transform = build_transform(CONFIG)
    image = load_image(jpeg(tmp_path / "a.jpg", size=(120, 40)))
    assert {tuple(transform(image).shape) for _ in range(5)} == {(3, 48, 48)}


def test_list_images(tmp_path):
    with pytest.raises(CSRAError, match="no JPEG or PNG images"):
        list_images(tmp_path)
    jpeg(tmp_path / "b.JPG")
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.png", "b.JPG"]


# An image whose red value is its column and green value its row: an output pixel tells where it came from.
WIDTH = HEIGHT = 160  # square: every aspect ratio from 3/4 to 4/3 fits at 70 % of the area
CONFIG32 = ModelConfig.create("resnet18", 3, 1, 0.1, 32)


def coordinates_png(path):
    pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    pixels[..., 0] = np.arange(WIDTH)[None, :]
    pixels[..., 1] = np.arange(HEIGHT)[:, None]
    Image.fromarray(pixels).save(path)
    return str(path)


def span(profile):
    """(first source pixel, source pixels covered, reversed) of a resized coordinate ramp: a line fitted to the
    inner output pixels (the outer ones are blurred by the antialiasing filter at the crop's edge)."""
    n = len(profile)
    j = np.arange(2, n - 2)
    slope, intercept = np.polyfit(j, profile[2:n - 2], 1)
    reverse = slope < 0
    if reverse:
        slope, intercept = np.polyfit(j, profile[::-1][2:n - 2], 1)
    return intercept + 0.5 - 0.5 * slope, slope * n, reverse


def geometry(images):
    """Per output image: (x0, width, y0, height, horizontally flipped, vertically flipped) in source pixels."""
    out = []
    for image in images.double():
        x0, w, hflip = span(image[0].mean(0).numpy())
        y0, h, vflip = span(image[1].mean(1).numpy())
        out.append((x0, w, y0, h, hflip, vflip))
    return np.array(out)


def one_batch(items, train, sampler=None, batch_size=None):
    images, _, indices, _ = next(iter(make_loader(items, CONFIG32, train, batch_size or len(items), 0, sampler)))
    return images, indices


def test_train_geometry_is_the_official_random_resized_crop_and_flip(tmp_path):
    path = coordinates_png(tmp_path / "xy.png")
    n = 300
    images, _ = one_batch([{"img_path": path, "target": [1, 0, 0]}] * n, True, EpochSampler(n, 0, SINGLE))
    x0, w, y0, h, hflip, vflip = geometry(images).T
    assert images.shape == (n, 3, 32, 32)
    assert (x0 > -1).all() and (x0 + w < WIDTH + 1).all() and (y0 > -1).all() and (y0 + h < HEIGHT + 1).all()
    area, ratio = w * h / (WIDTH * HEIGHT), w / h
    # RandomResizedCrop(scale=(0.7, 1.0), ratio=(3/4, 4/3)): both ends of both ranges are reached
    assert area.min() > 0.68 and area.min() < 0.73 and area.max() > 0.95
    assert ratio.min() > 0.73 and ratio.min() < 0.8 and ratio.max() < 1.36 and ratio.max() > 1.25
    assert 0.42 < hflip.mean() < 0.58 and not vflip.any()  # RandomHorizontalFlip(p=0.5), never vertical


def test_person_crops_are_only_flipped_and_resized(tmp_path):
    path = coordinates_png(tmp_path / "xy.png")
    n = 120
    item = {"img_path": path, "bbox": [40, 30, 100, 80], "target": [1, 0, 0]}
    images, _ = one_batch([item] * n, True, EpochSampler(n, 0, SINGLE))
    x0, w, y0, h, hflip, vflip = geometry(images).T
    assert np.allclose(x0, 40, atol=0.5) and np.allclose(w, 100, atol=0.5)  # the whole box, never a random crop
    assert np.allclose(y0, 30, atol=0.5) and np.allclose(h, 80, atol=0.5)
    assert 0.35 < hflip.mean() < 0.65 and not vflip.any()


def test_test_geometry_is_the_whole_image_resized(tmp_path):
    path = coordinates_png(tmp_path / "xy.png")
    images, _ = one_batch([{"img_path": path, "target": [1, 0, 0]}] * 20, False)
    x0, w, y0, h, hflip, vflip = geometry(images).T
    assert np.allclose(x0, 0, atol=0.5) and np.allclose(w, WIDTH, atol=0.5)
    assert np.allclose(y0, 0, atol=0.5) and np.allclose(h, HEIGHT, atol=0.5)
    assert not hflip.any() and not vflip.any()
    assert all(torch.equal(image, images[0]) for image in images)


def test_an_images_augmentation_depends_only_on_seed_epoch_and_index(tmp_path):
    path = coordinates_png(tmp_path / "xy.png")
    n = 12
    items = [{"img_path": path, "target": [1, 0, 0]}] * n

    def by_index(sampler, epoch, batch_size):
        sampler.set_epoch(epoch)
        out = {}
        for images, _, indices, _ in make_loader(items, CONFIG32, True, batch_size, 0, sampler):
            out.update({int(i): image for i, image in zip(indices, images)})
        return out

    whole = by_index(EpochSampler(n, 0, SINGLE), 1, 5)
    assert len(whole) == n and len({image.numpy().tobytes() for image in whole.values()}) == n
    # two processes with another batch size: each image gets the same crop and flip as in one process
    shared = {}
    for rank in (0, 1):
        shared.update(by_index(EpochSampler(n, 0, DistContext(rank, 2, rank)), 1, 2))
    assert shared.keys() == whole.keys() and all(torch.equal(shared[i], whole[i]) for i in whole)
    # another epoch: another crop for every image
    other = by_index(EpochSampler(n, 0, SINGLE), 2, 5)
    assert all(not torch.equal(other[i], whole[i]) for i in whole)


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
