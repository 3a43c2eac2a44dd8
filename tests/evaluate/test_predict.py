"""The one prediction path: validation, evaluate, demo and the heatmaps score an image as the model on its official
test-time pixels, in float32, whatever the batch size or loader processes; under torchrun the shares add up."""

import numpy as np
import pytest
import torch
from PIL import Image

from csra.data.loading import load_test_image, normalize_batch
from csra.evaluate.predict import predict
from csra.model.network import ModelConfig, build_model


@pytest.fixture
def items(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate([(40, 30), (64, 64), (90, 20), (33, 77), (50, 50)]):
        paths.append(tmp_path / f"{i}.jpg")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1], quality=90)
    return [{"img_path": str(p), "target": [1, 0, -1]} for p in paths]


def test_scores_are_the_model_on_the_official_pixels_in_float32(items):
    torch.manual_seed(0)
    model = build_model(ModelConfig.create("resnet18", 3, 2, 0.3, 32)).eval()
    with torch.no_grad():
        pixels = torch.stack([load_test_image(item["img_path"], 32) for item in items])
        expected = torch.sigmoid(model(normalize_batch(pixels, model.config))).numpy()
    for batch_size, workers in ((5, 0), (2, 0), (3, 2)):
        scores, targets, indices = predict(model, items, model.config, batch_size, workers, torch.device("cpu"))
        np.testing.assert_allclose(scores, expected, rtol=0, atol=3e-7)  # batch size: float noise only
        assert targets.tolist() == [[1, 0, -1]] * 5 and indices.tolist() == [0, 1, 2, 3, 4]
