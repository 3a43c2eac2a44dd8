"""The public API of docs/api.md: load a checkpoint (ours or official), score images and a folder, score a
predictions file; and `import csra` loads nothing heavy."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from official import official_resnet18_state
from official_metrics import official_ap
from PIL import Image

import csra
from csra.deploy.scoring import ScoringModel
from csra.model.checkpoints import load_checkpoint_model


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    images = tmp_path / "photos"
    images.mkdir()
    for i, size in enumerate([(50, 40), (64, 64), (33, 70)]):
        Image.fromarray(rng.integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(images / f"p{i}.png")
    return images


def test_readme_example_scores_a_folder_like_the_scoring_model(tiny_checkpoint, folder):
    model = csra.load_model(tiny_checkpoint, device="cpu")
    results = model.score_folder(folder, threshold=0.5)
    assert [p.image.name for p in results] == ["p0.png", "p1.png", "p2.png"]
    net, _ = load_checkpoint_model(tiny_checkpoint)
    for p in results:
        pixels = torch.from_numpy(np.asarray(Image.open(p.image).convert("RGB")).copy()).permute(2, 0, 1)
        expected = ScoringModel(net)(pixels[None])[0].tolist()
        assert list(p.scores) == ["circle", "square", "triangle"]
        assert list(p.scores.values()) == pytest.approx(expected, abs=1e-6)
        assert p.labels == [c for c, s in p.scores.items() if s >= 0.5]
    with pytest.raises(csra.CSRAError, match="no per-class thresholds stored"):
        model.score_folder(folder, threshold="per_class")


def test_an_official_state_dict_loads_with_its_dataset(tmp_path, folder):
    torch.save(official_resnet18_state(1, num_classes=20), tmp_path / "voc.pth")
    model = csra.load_model(tmp_path / "voc.pth", model="resnet18", lam=0.1, dataset="voc07", img_size=64,
                            device="cpu")
    assert model.classes[0] == "aeroplane" and len(model.score([folder / "p0.png"])[0].scores) == 20
    with pytest.raises(csra.CSRAError, match="stores no model config"):
        csra.load_model(tmp_path / "voc.pth")


def test_evaluate_predictions_gives_the_official_map(tmp_path):
    rng = np.random.default_rng(1)
    targets = rng.choice([-1, 0, 1], size=(10, 4), p=[0.5, 0.1, 0.4])
    targets[0] = 1
    scores = rng.integers(0, 10, size=(10, 4)) / 10
    (tmp_path / "ann.json").write_text(json.dumps([{"target": t.tolist(), "img_path": f"x/{i}.jpg"}
                                                    for i, t in enumerate(targets)]))
    (tmp_path / "scores.json").write_text(json.dumps([{"file_name": str(i), "scores": s.tolist()}
                                                       for i, s in enumerate(scores)]))
    metrics = csra.evaluate_predictions(tmp_path / "scores.json", tmp_path / "ann.json", dataset="voc07")
    expected = np.mean([official_ap(scores[:, c], targets[:, c], "voc07") for c in range(4)])
    assert metrics["mAP"] == pytest.approx(100 * expected, abs=1e-9)


def test_import_csra_loads_nothing_heavy():
    code = "import sys, csra; print(sorted(m for m in ('torch', 'torchvision', 'mlflow', 'matplotlib') " \
           "if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
