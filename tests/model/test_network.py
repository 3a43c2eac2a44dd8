import pytest
import torch

from csra.errors import CSRAError
from csra.model.network import ModelConfig, build_model
from csra.model.zoo import normalization_for


def test_resnet_feature_map_and_logits_shape():
    model = build_model(ModelConfig.create("resnet18", num_classes=7, num_heads=2, lam=0.2, img_size=64)).eval()
    x = torch.rand(2, 3, 64, 64)
    assert model.backbone(x).shape == (2, 512, 2, 2)
    assert model(x).shape == (2, 7)


def test_official_resnet_normalisation_is_identity():
    assert normalization_for("resnet101") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def test_config_round_trip_through_plain_dict():
    config = ModelConfig.create("resnet34", 20, 4, 0.5, 448)
    assert ModelConfig.from_dict(config.to_dict()) == config


def test_backbone_keys_match_torchvision():
    import torchvision

    keys = set(build_model(ModelConfig.create("resnet18", 3, 1, 0.1, 32)).backbone.state_dict())
    reference = {k for k in torchvision.models.resnet18().state_dict() if not k.startswith("fc.")}
    assert keys == reference


def test_vit_preprocessing_and_input_size_rules():
    config = ModelConfig.create("vit_L16_224", 14, 1, 0.3, 448)
    assert config.backbone == "vit_l16_224" and config.mean == (0.5, 0.5, 0.5) and config.std == (0.5, 0.5, 0.5)
    with pytest.raises(CSRAError, match="img_size of vit_b16_224 must be a multiple of 16, got 200"):
        ModelConfig.create("vit_b16_224", 14, 1, 0.3, 200)


def test_the_gap_baseline_has_no_csra_heads_and_round_trips():
    config = ModelConfig.create("resnet18", 5, num_heads=4, lam=0.5, img_size=32, head="gap")
    assert (config.head, config.num_heads, config.lam) == ("gap", 0, 0.0)
    assert ModelConfig.from_dict(config.to_dict()) == config
    model = build_model(config).eval()
    assert sorted(model.classifier.state_dict()) == ["fc.bias", "fc.weight"]
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 5)


def test_a_config_stored_before_the_head_field_is_csra_and_a_wrong_head_is_named():
    stored = ModelConfig.create("resnet18", 3, 2, 0.1, 32).to_dict()
    del stored["head"]
    assert ModelConfig.from_dict(stored).head == "csra"
    with pytest.raises(CSRAError, match="model config: head must be one of csra, gap, got 'fc'"):
        ModelConfig.from_dict({**stored, "head": "fc"})
    with pytest.raises(CSRAError, match="model config: head must be a string, got 3"):
        ModelConfig.from_dict({**stored, "head": 3})
