import pickle

import pytest
import torch

from csra.errors import CSRAError
from csra.model.checkpoints import load_checkpoint_model, save_checkpoint
from csra.model.network import ModelConfig, build_model
from csra.model.weights import strip_module_prefix


def test_round_trip_same_logits_config_and_classes(tmp_path):
    model = build_model(ModelConfig.create("resnet18", 3, 2, 0.3, 32)).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"], {"train.lam": 0.3}, epoch=4)
    loaded, saved = load_checkpoint_model(path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert loaded.config == model.config
    assert saved["classes"] == ["a", "b", "c"] and saved["params"] == {"train.lam": 0.3} and saved["epoch"] == 4
    assert not list(tmp_path.glob(".*tmp"))  # no temp file left behind


def test_the_same_model_saved_twice_anywhere_is_the_same_bytes(tmp_path):
    """DVC hashes the checkpoint: its bytes depend on the weights and fields only, not on the file's name or folder
    (torch names the zip archive's root after the file it writes, which is a temporary one)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.create("resnet18", 3, 2, 0.3, 32)).eval()
    first = save_checkpoint(tmp_path / "a" / "best.pt", model, ["a", "b", "c"], {"train.lam": 0.3}, epoch=4)
    second = save_checkpoint(tmp_path / "b" / "c" / "other.pt", model, ["a", "b", "c"], {"train.lam": 0.3}, epoch=4)
    assert first.read_bytes() == second.read_bytes()
    assert b".best.pt." not in first.read_bytes() and b"best/" not in first.read_bytes()


class Payload:
    pass


def test_refuses_files_that_need_unpickling(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "csra-checkpoint-v1", "x": Payload()}, f)
    torch.save({"obj": Payload()}, tmp_path / "obj.pt")
    for bad in (path, tmp_path / "obj.pt"):
        with pytest.raises(CSRAError, match="refused|not a readable"):
            load_checkpoint_model(bad)


# Official state dicts (random weights in the official key layouts) against the independent reference forward.
from official import (  # noqa: E402
    PAPER_TEMPERATURES,
    csra_logits,
    official_resnet18_state,
    resnet18_reference,
    timm_vit_features,
    timm_vit_state,
    tiny_vit,
)

from csra.model import backbones  # noqa: E402
from csra.model.backbones import resize_pos_embedding  # noqa: E402
from csra.model.checkpoints import ModelOptions  # noqa: E402


@pytest.mark.parametrize("num_heads", sorted(PAPER_TEMPERATURES))
def test_official_resnet_state_dict_gives_the_official_logits(tmp_path, num_heads):
    lam = 0.37
    state = official_resnet18_state(num_heads, num_classes=5, seed=num_heads)
    prefixed = num_heads % 2 == 0  # saved from nn.DataParallel: every key starts with module.
    torch.save({f"module.{k}": v for k, v in state.items()} if prefixed else state, tmp_path / "official.pth")
    options = ModelOptions(backbone="resnet18", lam=lam, img_size=64, classes=list("abcde"))
    model, saved = load_checkpoint_model(tmp_path / "official.pth", options)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), resnet18_reference(state, x, num_heads, lam), rtol=0, atol=1e-5)
    assert model.config.num_heads == num_heads and model.config.mean == (0.0, 0.0, 0.0)
    assert saved["classes"] == list("abcde")


@pytest.fixture
def tiny_vit_zoo(monkeypatch):
    """vit_b16_224 replaced by a 2-layer ViT with a 4 × 4 trained grid (same code path, tiny sizes)."""
    monkeypatch.setitem(backbones.BUILDERS, "vit_b16_224", (tiny_vit, backbones.BUILDERS["vit_b16_224"][1]))


def test_official_vit_state_dict_in_timm_naming_gives_the_official_logits(tmp_path, tiny_vit_zoo):
    state = timm_vit_state(num_heads=2, num_classes=3)
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "vit.pth")
    options = ModelOptions(backbone="vit_B16_224", lam=0.3, img_size=64, classes=["x", "y", "z"])
    model, _ = load_checkpoint_model(tmp_path / "vit.pth", options)
    assert model.config.backbone == "vit_b16_224" and model.config.mean == (0.5, 0.5, 0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = csra_logits(timm_vit_features(state, x), state, 2, 0.3)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)

        # at 96 px (6 × 6 patches) the trained 4 × 4 position grid is interpolated bicubically, class token kept
        x = torch.randn(1, 3, 96, 96)
        pos = state["pos_embed"]
        grid = torch.nn.functional.interpolate(pos[:, 1:].reshape(1, 4, 4, 32).permute(0, 3, 1, 2), size=(6, 6),
                                               mode="bicubic", align_corners=False)
        pos96 = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, 36, 32)], dim=1)
        expected = csra_logits(timm_vit_features(state, x, pos96), state, 2, 0.3)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=1e-5)
        torch.testing.assert_close(resize_pos_embedding(pos, (6, 6)), pos96)


def test_unmappable_layout_lists_missing_unexpected_keys_and_shapes(tmp_path, tiny_vit_zoo):
    state = {k: v for k, v in timm_vit_state(1, 3, tokens=37).items() if not k.startswith("classifier.")}
    state.update({f"head{i}.{p}": torch.zeros(3) for i in range(1, 9) for p in ("weight", "bias")})
    torch.save(state, tmp_path / "vit_l.pth")
    options = ModelOptions(backbone="vit_b16_224", lam=0.3, classes=list("abc"))
    with pytest.raises(CSRAError) as info:
        load_checkpoint_model(tmp_path / "vit_l.pth", options)
    message = str(info.value)
    assert "\n" not in message
    assert "1 missing key(s): classifier.multi_head.0.head.weight" in message
    assert "16 unexpected key(s): backbone.head1.weight, backbone.head1.bias" in message
    assert "shape mismatch(es) (file vs model): backbone.encoder.pos_embedding (1, 37, 32) vs (1, 17, 32)" in message


def test_official_state_dict_needs_the_model_options_and_matching_classes(tmp_path):
    torch.save(official_resnet18_state(1, num_classes=20), tmp_path / "voc.pth")
    with pytest.raises(CSRAError, match="stores no model config.*--model, --lam, --dataset"):
        load_checkpoint_model(tmp_path / "voc.pth", ModelOptions(backbone="resnet18"))
    with pytest.raises(CSRAError, match="has 20 classes, but the dataset has 80"):
        load_checkpoint_model(tmp_path / "voc.pth", ModelOptions(backbone="resnet18", lam=0.1, classes=["c"] * 80))
    with pytest.raises(CSRAError, match="has 1 CSRA head.*but 4 was given"):
        load_checkpoint_model(tmp_path / "voc.pth",
                              ModelOptions(backbone="resnet18", lam=0.1, num_heads=4, classes=["c"] * 20))
    with pytest.raises(CSRAError, match="weights do not fit.*shape mismatch.*backbone.layer1.0.conv1.weight"):
        load_checkpoint_model(tmp_path / "voc.pth", ModelOptions(backbone="resnet50", lam=0.1, classes=["c"] * 20))
    model, _ = load_checkpoint_model(tmp_path / "voc.pth",
                                     ModelOptions(backbone="resnet18", lam=0.1, classes=["c"] * 20))
    assert model.config.img_size == 448  # the official ResNet input size


def test_our_checkpoint_must_agree_with_the_options_given(tmp_path):
    model = build_model(ModelConfig.create("resnet18", 3, 2, 0.3, 32))
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c"], {})
    for options, needle in [(ModelOptions(num_heads=4), "num_heads 2, but 4"), (ModelOptions(lam=0.5), "lam 0.3"),
                            (ModelOptions(backbone="resnet34"), "model resnet18, but resnet34"),
                            (ModelOptions(classes=["c"] * 80), "3 classes are not the dataset's: 3 class names, "
                                                               "not 80"),
                            (ModelOptions(classes=["a", "c", "b"]), "class 1 is 'b', not 'c'")]:
        with pytest.raises(CSRAError, match=needle):
            load_checkpoint_model(path, options)
    loaded, _ = load_checkpoint_model(path, ModelOptions(backbone="resnet18", num_heads=2, lam=0.3, img_size=64,
                                              classes=["a", "b", "c"]))
    assert loaded.config.img_size == 64  # only the input size may differ from training


def test_the_gap_baseline_round_trips_and_is_not_taken_for_csra_heads(tmp_path):
    model = build_model(ModelConfig.create("resnet18", 3, 1, 0.1, 32, head="gap")).eval()
    path = save_checkpoint(tmp_path / "gap.pt", model, ["a", "b", "c"], {})
    loaded, _ = load_checkpoint_model(path)
    x = torch.rand(2, 3, 32, 32)
    assert loaded.config.head == "gap"
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(CSRAError, match="the checkpoint has num_heads 0, but 2 was given"):
        load_checkpoint_model(path, ModelOptions(num_heads=2))


def test_the_module_prefix_goes_only_when_every_key_carries_it():
    """DataParallel / DDP prefix every key with `module.`; a state dict where only some keys carry it is not
    theirs, and its keys stay as they are (the layout check then names them)."""
    one, two = torch.zeros(1), torch.ones(1)
    assert strip_module_prefix({"module.fc.weight": one, "module.fc.bias": two}) == {"fc.weight": one, "fc.bias": two}
    mixed = {"module.fc.weight": one, "fc.bias": two}
    assert strip_module_prefix(mixed) == mixed
    assert strip_module_prefix({}) == {}
