"""Backbones: ViT feature maps at any multiple of 16 px, and the initial-weight sources (imagenet cache, files)."""

import pytest
import torch
import torchvision
from official import TINY_VIT, timm_vit_state, tiny_vit

from csra.errors import CSRAError
from csra.model import backbones, zoo
from csra.model.backbones import create_backbone, imagenet_weights_file, load_initial_weights


def test_vit_b16_gives_patch_tokens_as_a_feature_map_at_any_multiple_of_16():
    backbone = create_backbone("vit_B16_224").eval()  # the official spelling is accepted
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 224, 224)).shape == (1, 768, 14, 14)
        assert backbone(torch.rand(1, 3, 256, 192)).shape == (1, 768, 16, 12)
    assert backbone.encoder.pos_embedding.shape == (1, 197, 768)  # kept at the trained 14 × 14 grid
    with torch.device("meta"):
        large = create_backbone("vit_L16_224")
    assert large.out_channels == 1024 and len(large.encoder.layers) == 24


def test_unknown_name_lists_the_models():
    with pytest.raises(CSRAError, match="model must be one of .*resnet152, vit_b16_224, vit_l16_224, got 'vit_h14'"):
        create_backbone("vit_h14")


def test_every_zoo_entry_has_a_builder_and_every_family_a_wrapper():
    assert set(backbones.BUILDERS) == set(zoo.BACKBONES)
    assert set(backbones.WRAPPERS) == set(zoo.FAMILIES) == set(zoo.BACKBONES.values())


def test_a_backbone_without_builder_or_with_an_unknown_family_is_one_error(monkeypatch):
    monkeypatch.setitem(zoo.BACKBONES, "resnet200", "resnet")
    with pytest.raises(CSRAError, match=r"^backbone resnet200: no torchvision builder in csra/model/backbones\.py"):
        create_backbone("resnet200")
    monkeypatch.setitem(zoo.BACKBONES, "convnext_t", "convnext")
    with pytest.raises(CSRAError, match=r"^backbone convnext_t: family 'convnext' has no wrapper"):
        create_backbone("convnext_t")
    with pytest.raises(CSRAError, match=r"^backbone convnext_t: family 'convnext' is not in the zoo's families"):
        zoo.default_img_size("convnext_t")


def test_imagenet_weights_come_from_the_torch_home_cache_or_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    backbone = create_backbone("resnet18")
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_file("resnet18") == expected
    with pytest.raises(CSRAError, match=f"put resnet18-f37072fd.pth .*download.pytorch.org.* in {expected.parent}"):
        load_initial_weights(backbone, "resnet18", "imagenet")
    expected.parent.mkdir(parents=True)
    reference = torchvision.models.resnet18()
    torch.save(reference.state_dict(), expected)
    load_initial_weights(backbone, "resnet18", "imagenet")
    torch.testing.assert_close(backbone.layer4[1].conv2.weight, reference.layer4[1].conv2.weight, rtol=0, atol=0)


def test_cutmix_style_file_with_module_prefix_and_fc_loads_and_a_wrong_one_is_refused(tmp_path):
    reference = torchvision.models.resnet18()
    torch.save({"state_dict": {f"module.{k}": v for k, v in reference.state_dict().items()}}, tmp_path / "cutmix.pth")
    backbone = create_backbone("resnet18")
    load_initial_weights(backbone, "resnet18", str(tmp_path / "cutmix.pth"))
    torch.testing.assert_close(backbone.bn1.running_var, reference.bn1.running_var, rtol=0, atol=0)
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(CSRAError, match=r"r34.pth: weights do not fit.*unexpected key\(s\): layer1.2"):
        load_initial_weights(backbone, "resnet18", str(tmp_path / "r34.pth"))
    with pytest.raises(CSRAError, match="nope.pth: initial weights file not found"):
        load_initial_weights(backbone, "resnet18", str(tmp_path / "nope.pth"))


def test_timm_jax_vit_file_maps_onto_torchvision_names(tmp_path, monkeypatch):
    monkeypatch.setitem(backbones.BUILDERS, "vit_b16_224", (tiny_vit, backbones.BUILDERS["vit_b16_224"][1]))
    state = {k: v for k, v in timm_vit_state(1, 3).items() if not k.startswith("classifier.")}
    d, p = TINY_VIT["hidden_dim"], TINY_VIT["patch_size"]
    file_state = {**state, "head.weight": torch.zeros(1000, d), "head.bias": torch.zeros(1000),
                  "patch_embed.proj.weight": state["patch_embed.proj.weight"].reshape(d, 3 * p * p)}  # old flat form
    torch.save(file_state, tmp_path / "jx_vit_tiny.pth")
    backbone = create_backbone("vit_b16_224")
    load_initial_weights(backbone, "vit_b16_224", str(tmp_path / "jx_vit_tiny.pth"))
    mapped = backbone.state_dict()
    pairs = {"class_token": "cls_token", "encoder.pos_embedding": "pos_embed",
             "conv_proj.weight": "patch_embed.proj.weight",
             "encoder.layers.encoder_layer_1.self_attention.in_proj_weight": "blocks.1.attn.qkv.weight",
             "encoder.layers.encoder_layer_1.self_attention.out_proj.bias": "blocks.1.attn.proj.bias",
             "encoder.layers.encoder_layer_0.mlp.3.weight": "blocks.0.mlp.fc2.weight",
             "encoder.layers.encoder_layer_0.ln_2.weight": "blocks.0.norm2.weight", "encoder.ln.bias": "norm.bias"}
    for ours, theirs in pairs.items():
        torch.testing.assert_close(mapped[ours], state[theirs], rtol=0, atol=0)
