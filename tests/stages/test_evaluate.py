"""`csra evaluate --scores`: any model's official result file scored against an annotation file."""

import json

import numpy as np
import pytest
from helpers import assert_one_line_error, run
from official import loop_ap, loop_threshold_metrics


@pytest.fixture
def voc_case(tiny_params, tmp_path):
    rng = np.random.default_rng(5)
    targets = rng.choice([-1, 0, 1], size=(12, 20), p=[0.6, 0.1, 0.3])
    targets[:2] = 1
    scores = rng.integers(0, 10, size=(12, 20)) / 10
    items = [{"target": t.tolist(), "img_path": f"VOC2007/JPEGImages/{i:06d}.jpg"} for i, t in enumerate(targets)]
    entries = [{"file_name": f"{i:06d}", "scores": s.tolist()} for i, s in enumerate(scores)]
    ann, res = tmp_path / "test_voc07.json", tmp_path / "scores.json"
    ann.write_text(json.dumps(items))
    res.write_text(json.dumps(entries))
    return ann, res, scores, targets


def test_scores_only_matches_official_rules(voc_case, tmp_path):
    ann, res, scores, targets = voc_case
    code, output = run("evaluate", "--scores", str(res), "--annotations", str(ann), "--dataset", "voc07",
                       "--out-dir", str(tmp_path / "out"))
    assert code == 0, output
    metrics = json.loads((tmp_path / "out/metrics.json").read_text())
    expected_map = np.mean([loop_ap(scores[:, c], targets[:, c], "voc07") for c in range(20)])
    assert metrics["mAP"] == pytest.approx(100 * expected_map, abs=1e-9)
    for key, value in loop_threshold_metrics(scores, targets, "voc07").items():
        assert metrics[key] == pytest.approx(100 * value, abs=1e-9)
    rows = (tmp_path / "out/per_class.csv").read_text().splitlines()
    assert rows[0] == "class,AP,precision,recall,F1,support" and rows[1].startswith("aeroplane,")
    assert len(rows) == 21
    assert "no MLflow run" in output


def test_scores_file_must_match_the_annotations(voc_case, tmp_path):
    ann, res, scores, targets = voc_case
    entries = json.loads(res.read_text())
    base = ("evaluate", "--scores", str(tmp_path / "bad.json"), "--annotations", str(ann), "--dataset", "voc07")
    (tmp_path / "bad.json").write_text(json.dumps(entries[:-1]))
    assert_one_line_error(*run(*base), "11 entries, but the annotation file has 12 images")
    (tmp_path / "bad.json").write_text(json.dumps([{**e, "scores": e["scores"][:5]} for e in entries]))
    assert_one_line_error(*run(*base), "entry 0 has 5 scores, expected 20 classes")
    (tmp_path / "bad.json").write_text(json.dumps(entries[::-1]))
    assert_one_line_error(*run(*base), "entry 0 is '000011' but annotation item 0 is '000000'")
    assert_one_line_error(*run(*base[:5], "--dataset", "coco"), "label code -1; coco files allow 0, 1")
    assert_one_line_error(*run(*base, "--checkpoint", "x.pt"), "not both")


def test_official_checkpoint_through_evaluate_and_demo(tiny_params, tmp_path):
    import torch
    from official import official_resnet18_state, resnet18_reference
    from PIL import Image

    from csra.data.loading import build_transform, load_image, normalize_batch
    from csra.model.network import ModelConfig

    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    items = []
    for i in range(3):
        path = tmp_path / "images" / f"{i:06d}.png"
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(path)
        items.append({"target": [1] + [-1] * 19, "img_path": str(path)})
    (tmp_path / "ann.json").write_text(json.dumps(items))
    state = official_resnet18_state(num_heads=2, num_classes=20)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "voc_official.pth")
    model_args = ("--checkpoint", str(tmp_path / "voc_official.pth"), "--model", "resnet18", "--num-heads", "2",
                  "--lam", "0.1", "--img-size", "64")

    code, output = run("evaluate", *model_args, "--annotations", str(tmp_path / "ann.json"), "--dataset", "voc07",
                       "--out-dir", str(tmp_path / "eval"))
    assert code == 0, output
    scores = json.loads((tmp_path / "eval/scores.json").read_text())
    assert [s["file_name"] for s in scores] == ["000000", "000001", "000002"]
    config = ModelConfig.create("resnet18", 20, 2, 0.1, 64)
    transform = build_transform(config, train=False)
    images = normalize_batch(torch.stack([transform(load_image(item["img_path"])) for item in items]), config)
    expected = torch.sigmoid(resnet18_reference(state, images, 2, 0.1))
    np.testing.assert_allclose([s["scores"] for s in scores], expected.numpy(), atol=1e-5)

    code, output = run("demo", *model_args, "--images", str(tmp_path / "images"), "--dataset", "voc07",
                       "--out-dir", str(tmp_path / "demo"))
    assert code == 0, output
    predictions = json.loads((tmp_path / "demo/predictions.json").read_text())
    assert list(predictions[0]["scores"])[:2] == ["aeroplane", "bicycle"] and len(predictions) == 3

    assert_one_line_error(*run("demo", *model_args, "--images", str(tmp_path / "images"), "--dataset", "coco"),
                          "the state dict has 20 classes, but the dataset has 80")
    assert_one_line_error(*run("evaluate", *model_args[:4], "--annotations", str(tmp_path / "ann.json"),
                               "--dataset", "voc07"), "give the model name, λ and the dataset")
