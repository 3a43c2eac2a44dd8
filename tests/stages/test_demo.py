"""`csra demo` on a tiny checkpoint: lines, predictions.json, heatmaps, and bad input as one error line."""

import json

import pytest
import torch
import yaml
from helpers import assert_one_line_error, ok, run
from PIL import Image

from csra.data.loading import load_image
from csra.deploy.scoring import ScoringModel, predict_files
from csra.errors import CSRAError
from csra.model.checkpoints import load_checkpoint_model, save_checkpoint
from csra.model.network import ModelConfig, build_model


def images_folder(root):
    folder = root / "images"
    folder.mkdir()
    Image.new("RGB", (40, 30), "red").save(folder / "a.png")
    Image.new("RGB", (25, 50), "blue").save(folder / "b.jpg")
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def test_demo_writes_lines_scores_and_a_heatmap_per_predicted_class(tiny_params, tiny_checkpoint, tmp_path):
    folder = images_folder(tmp_path)
    code, output = run("demo", "--checkpoint", str(tiny_checkpoint), "--images", str(folder), "--threshold", "0")
    assert code == 0, output
    assert "broken.jpg: cannot read image" in output
    assert f"{folder / 'a.png'} prediction: circle,square,triangle," in output
    predictions = json.loads((tmp_path / "results/demo/predictions.json").read_text())
    assert [p["image"] for p in predictions] == [str(folder / "a.png"), str(folder / "b.jpg")]
    assert all(p["labels"] == ["circle", "square", "triangle"] and len(p["scores"]) == 3 for p in predictions)
    heatmaps = tmp_path / "results/demo/heatmaps"
    assert sorted(p.name for p in heatmaps.iterdir()) == ["a", "a.png", "b", "b.png"]
    with Image.open(heatmaps / "b" / "triangle.png") as heat:
        assert heat.size == (25, 50)


def test_demo_scores_are_the_scoring_model_on_the_raw_image(tiny_checkpoint, tmp_path):
    folder = images_folder(tmp_path)
    model, _ = load_checkpoint_model(tiny_checkpoint)
    paths = [folder / "a.png", folder / "broken.jpg", folder / "b.jpg"]
    results = predict_files(model, paths, torch.device("cpu"), batch_size=2)
    assert [path.name for path, _ in results] == ["a.png", "b.jpg"]  # broken.jpg reported and skipped
    for path, scores in results:
        with torch.no_grad():
            expected = ScoringModel(model)(load_image(path).unsqueeze(0))[0]  # the exported form: the same pixels
        assert torch.allclose(torch.tensor(scores), expected, atol=1e-6)
    with pytest.raises(CSRAError, match="broken.jpg: cannot read image"):
        predict_files(model, paths, torch.device("cpu"), skip_bad=False)


def test_demo_bad_input_is_one_error_line(tiny_params, tiny_checkpoint, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(*run("demo", "--checkpoint", str(tiny_checkpoint), "--images", str(empty)),
                          "no JPEG or PNG images")
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"")
    assert_one_line_error(*run("demo", "--checkpoint", str(tiny_checkpoint), "--images", str(only_broken)),
                          "broken: none of the 1 images could be read")
    payload = load_checkpoint_model(tiny_checkpoint)[1]
    model = build_model(ModelConfig.from_dict(payload["model_config"]))
    two_names = save_checkpoint(tmp_path / "two.pt", model, ["circle", "square"], {})
    assert_one_line_error(*run("demo", "--checkpoint", str(two_names), "--images", str(images_folder(tmp_path))),
                          "two.pt: 2 class names, but the model has 3 classes")
    assert not (tmp_path / "results/demo/heatmaps").exists()


def test_the_default_images_are_the_first_eight_of_the_prepared_test_split(tiny_params, tiny_checkpoint, tmp_path):
    """demo.images defaults to the test split's digest, which prepare writes for every dataset: its first 8 images,
    by path (the built-in dataset's demo/ folder is not what a real dataset has)."""
    assert yaml.safe_load(tiny_params.read_text())["demo"]["images"] == "data/prepared/test.md5"
    ok("prepare")
    listed = [line.split("  ")[1] for line in (tmp_path / "data/prepared/test.md5").read_text().splitlines()]
    first = [path for path in listed if path.endswith(".jpg")][:8]
    assert len(first) == 8
    ok("demo", "--checkpoint", str(tiny_checkpoint))
    predictions = json.loads((tmp_path / "results/demo/predictions.json").read_text())
    assert [p["image"] for p in predictions] == first
