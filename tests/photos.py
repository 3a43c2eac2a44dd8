"""Photo collections for the `csra score` tests: generated photos of a few sizes and formats, the bad ones a
collection holds (unreadable, truncated, over the pixel limit), and the Ray processes a job may leave behind."""

from __future__ import annotations

from pathlib import Path


def write_photos(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """count random photos in folder, of a few sizes, every fourth a PNG and the rest JPEGs; their paths."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        size = (40 + i % 7 * 4, 30 + i % 5 * 3)
        path = folder / f"photo_{i:03d}.{'png' if i % 4 == 0 else 'jpg'}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def write_bad_photos(folder: Path, good: Path, max_pixels: int) -> dict[str, str]:
    """{name: what its error says} of an unreadable photo, a truncated one (of the photo file good) and one of 200 x
    150 pixels, over max_pixels (the export.max_pixels of the test)."""
    from PIL import Image

    (folder / "not_a_photo.jpg").write_bytes(b"these bytes are no JPEG")
    data = good.read_bytes()
    (folder / "truncated.jpg").write_bytes(data[: len(data) // 2])
    Image.new("RGB", (200, 150), "red").save(folder / "too_large.png")
    return {"not_a_photo.jpg": "not an image file", "truncated.jpg": "not a complete image file",
            "too_large.png": f"over the limit of {max_pixels:,}"}


def ray_processes(folder: Path) -> list:
    """The processes whose command line names folder (Ray's temp folder): those a job left behind."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        if str(folder) in " ".join(process.info["cmdline"] or []):
            found.append(process)
    return found
