"""`csra evaluate --scores`: any model's official result file scored against an annotation file."""

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, assert_one_line_error, edit_params, ok, run
from official_metrics import official_ap, official_threshold_metrics


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
    expected_map = np.mean([official_ap(scores[:, c], targets[:, c], "voc07") for c in range(20)])
    assert metrics["mAP"] == pytest.approx(100 * expected_map, abs=1e-9)
    for key, value in official_threshold_metrics(scores, targets, "voc07").items():
        assert metrics[key] == pytest.approx(100 * value, abs=1e-9)
    rows = (tmp_path / "out/per_class.csv").read_text().splitlines()
    assert rows[0] == "class,AP,precision,recall,F1,support" and rows[1].startswith("aeroplane,")
    assert len(rows) == 21
    assert "not logged to MLflow" in output


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


def photos(folder, sizes, seed=0):
    """Photo-like JPEGs and PNGs (noise on smooth gradients) of the given (width, height) sizes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (w, h) in enumerate(sizes):
        ramp = np.add.outer(np.linspace(0, 200, h), np.linspace(0, 55, w))[..., None] * rng.uniform(0.3, 1, 3)
        pixels = np.clip(ramp + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
        path = folder / f"{i:06d}.{'png' if i % 3 == 2 else 'jpg'}"
        Image.fromarray(pixels).save(path, quality=90) if path.suffix == ".jpg" else Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


def test_official_resnet_scores_through_evaluate_and_demo(tiny_params, tmp_path):
    """A random-weight ResNet in the official layout: evaluate's and demo's scores are the official model's on the
    official preprocessing (PIL decode, PIL bilinear resize, ToTensor), large and small images included.
    bench/bench_official_parity.py does the same for ResNet-101 at 448 px and ViT-B/16 at 224 px."""
    import torch
    from official import official_resnet18_state, official_test_images, resnet18_reference

    paths = photos(tmp_path / "images", [(1000, 750), (500, 375), (333, 500), (48, 40), (2000, 300)])
    items = [{"target": [1] + [-1] * 19, "img_path": str(p)} for p in paths]
    (tmp_path / "ann.json").write_text(json.dumps(items))
    state = official_resnet18_state(num_heads=1, num_classes=20, depth=18)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "voc_official.pth")
    model_args = ("--checkpoint", str(tmp_path / "voc_official.pth"), "--model", "resnet18", "--num-heads", "1",
                  "--lam", "0.1", "--img-size", "96")
    code, output = run("evaluate", *model_args, "--annotations", str(tmp_path / "ann.json"), "--dataset", "voc07",
                       "--out-dir", str(tmp_path / "eval"))
    assert code == 0, output
    scores = json.loads((tmp_path / "eval/scores.json").read_text())
    assert [s["file_name"] for s in scores] == [p.stem for p in paths]
    expected = torch.sigmoid(resnet18_reference(state, official_test_images(paths, 96, (0, 0, 0), (1, 1, 1)), 1,
                                                0.1)).numpy()
    values = np.array([s["scores"] for s in scores])
    assert np.abs(values - expected).max() <= 1e-5 and 0.05 < np.median(values) < 0.95  # float noise; not saturated

    code, output = run("demo", *model_args, "--images", str(tmp_path / "images"), "--dataset", "voc07",
                       "--out-dir", str(tmp_path / "demo"))
    assert code == 0, output
    predictions = json.loads((tmp_path / "demo/predictions.json").read_text())
    assert list(predictions[0]["scores"])[:2] == ["aeroplane", "bicycle"] and len(predictions) == 5
    by_name = {Path(p["image"]).name: list(p["scores"].values()) for p in predictions}
    np.testing.assert_array_equal([by_name[p.name] for p in paths], values)  # demo scores = evaluate scores

    assert_one_line_error(*run("demo", *model_args, "--images", str(tmp_path / "images"), "--dataset", "coco"),
                          "the state dict has 20 classes, but the dataset has 80")
    assert_one_line_error(*run("evaluate", *model_args[:4], "--annotations", str(tmp_path / "ann.json"),
                               "--dataset", "voc07"), "give the model name, λ and the dataset")


def test_the_report_ranks_each_class_once(monkeypatch, tmp_path):
    """The AP and the precision-recall curves of the report come from one ranking (one sort per class)."""
    import csra.evaluate.metrics as metrics
    import stages.report as report

    calls, original = [], metrics.rank

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(metrics, "rank", counted)
    monkeypatch.setattr(report, "rank", counted)
    rng = np.random.default_rng(3)
    values, targets = rng.random((30, 4)).round(1), rng.integers(0, 2, (30, 4))
    items = [{"target": t.tolist(), "img_path": f"{i}.jpg"} for i, t in enumerate(targets)]
    _, aps = report.write_report(tmp_path, values, items, list("abcd"), "coco", 0.5, with_scores=False, plots=True)
    assert len(calls) == 1 and (tmp_path / "plots/pr_curves.png").is_file()
    np.testing.assert_allclose(aps, [official_ap(values[:, c], targets[:, c]) for c in range(4)], rtol=0, atol=1e-12)


@pytest.fixture
def coco_case(tmp_path):
    """A scores file and its annotation file, 40 images x 80 COCO classes, in tmp_path/case."""
    rng = np.random.default_rng(7)
    targets = (rng.random((40, 80)) < 0.3).astype(int)
    targets[0] = 1
    scores = rng.integers(0, 20, size=(40, 80)) / 20
    folder = tmp_path / "case"
    folder.mkdir()
    (folder / "ann.json").write_text(json.dumps([{"target": t.tolist(), "img_path": f"val2014/{i:012d}.jpg"}
                                                 for i, t in enumerate(targets)]))
    (folder / "scores.json").write_text(json.dumps([{"file_name": f"{i:012d}", "scores": s.tolist()}
                                                    for i, s in enumerate(scores)]))
    return folder / "scores.json", folder / "ann.json", scores, targets


def assert_official_metrics(out_dir, scores, targets, threshold):
    metrics = json.loads((out_dir / "metrics.json").read_text())
    expected_map = np.mean([official_ap(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])
    assert metrics["mAP"] == pytest.approx(100 * expected_map, abs=1e-9)
    for key, value in official_threshold_metrics(scores, targets, threshold=threshold).items():
        assert metrics[key] == pytest.approx(100 * value, abs=1e-9)


def test_scores_outside_a_project_use_the_defaults_and_say_so(coco_case, tmp_path, monkeypatch):
    res, ann, scores, targets = coco_case
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    output = ok("evaluate", "--scores", res, "--annotations", ann, "--dataset", "coco")
    assert output.splitlines()[0] == ("note: no params.yaml here: using the defaults evaluate.out_dir "
                                      "results/evaluate, evaluate.threshold 0.5")
    assert_official_metrics(tmp_path / "results/evaluate", scores, targets, 0.5)
    assert not (tmp_path / "results/evaluate/plots").exists()  # plots on request only
    output = ok("evaluate", "--scores", res, "--annotations", ann, "--dataset", "coco", "--threshold", "0.3",
                "--out-dir", tmp_path / "given", "--plots")
    assert "note:" not in output  # every default that matters was given
    assert_official_metrics(tmp_path / "given", scores, targets, 0.3)
    assert sorted(p.name for p in (tmp_path / "given/plots").iterdir()) == ["ap_per_class.png", "pr_curves.png"]
    # without --annotations the prepared folder (and the default dataset) matter: named, then the missing file
    code, output = run("evaluate", "--scores", res)
    assert output.startswith("note: no params.yaml here: using the defaults data.dataset synthetic, "
                             "data.prepared_dir data/prepared, evaluate.out_dir results/evaluate")
    assert_one_line_error(code, output, "data/prepared/test_voc07.json: annotation file not found")
    assert_one_line_error(*run("evaluate", "--scores", res, "--params", tmp_path / "none.yaml"),
                          "none.yaml: params file not found")


def test_scores_inside_a_project_read_params_yaml(coco_case, tiny_params, tmp_path):
    res, ann, scores, targets = coco_case
    edit_params(tiny_params, **{"evaluate.threshold": 0.3, "evaluate.out_dir": "elsewhere"})
    output = ok("evaluate", "--scores", res, "--annotations", ann, "--dataset", "coco")
    assert "note:" not in output
    assert_official_metrics(tmp_path / "elsewhere", scores, targets, 0.3)
    edit_params(tiny_params, **{"evaluate.threshold": 3})
    assert_one_line_error(*run("evaluate", "--scores", res, "--annotations", ann, "--dataset", "coco"),
                          "params.yaml: evaluate.threshold")


def test_the_defaults_are_those_of_conf():
    import yaml

    from stages.report import DEFAULTS

    conf = yaml.safe_load((REPO / "conf/config.yaml").read_text())
    assert DEFAULTS == {key: conf[key.split(".")[0]][key.split(".")[1]] for key in DEFAULTS}
