"""Independent references for the model-zoo tests: state dicts in the official layouts (random weights), the
official forward pass written from the paper's equations and the timm ViT, and the official test-time input, without
any `csra` code. The official metrics are in official_metrics.py."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

PAPER_TEMPERATURES = {1: [1], 2: [1, 99], 4: [1, 2, 4, 99], 6: [1, 2, 3, 4, 5, 99], 8: [1, 2, 3, 4, 5, 6, 7, 99]}
TINY_VIT = {"image_size": 64, "patch_size": 16, "num_layers": 2, "num_heads": 2, "hidden_dim": 32, "mlp_dim": 64}


def tiny_vit(weights=None) -> torchvision.models.VisionTransformer:
    """A 2-layer torchvision ViT with a 4 × 4 trained grid, standing in for vit_b16_224 in tests."""
    return torchvision.models.VisionTransformer(**TINY_VIT)


def head_weights(num_heads: int, num_classes: int, channels: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {f"classifier.multi_head.{i}.head.weight": torch.randn(num_classes, channels, 1, 1, generator=gen)
            for i in range(num_heads)}


def csra_logits(feat: torch.Tensor, state: dict[str, torch.Tensor], num_heads: int, lam: float) -> torch.Tensor:
    """Sum over heads of mean(score) + λ·attention-pooled score, score = 1×1 conv / ‖class weight‖."""
    logits = 0
    for i, temperature in enumerate(PAPER_TEMPERATURES[num_heads]):
        w = state[f"classifier.multi_head.{i}.head.weight"].flatten(1)
        score = torch.einsum("bchw,kc->bkhw", feat, w) / w.norm(dim=1)[None, :, None, None]
        score = score.flatten(2)
        if temperature == 99:
            att = score.max(dim=2).values
        else:
            att = (score * torch.softmax(temperature * score, dim=2)).sum(dim=2)
        logits = logits + score.mean(dim=2) + lam * att
    return logits


def official_resnet18_state(num_heads: int, num_classes: int, seed: int = 0, depth: int = 18) -> dict:
    """What ResNet_CSRA(depth).state_dict() holds: torchvision ResNet keys without fc, plus the heads.
    Batch-norm statistics are randomised so that eval-mode normalisation is exercised."""
    gen = torch.Generator().manual_seed(seed)
    net = getattr(torchvision.models, f"resnet{depth}")()
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("fc."):
            continue
        if value.is_floating_point():
            value = torch.rand(value.shape, generator=gen) + 0.5 if "running_var" in key else \
                torch.randn(value.shape, generator=gen) * 0.1
        state[key] = value
    return {**state, **head_weights(num_heads, num_classes, net.fc.in_features, gen)}


def resnet18_reference(state: dict, x: torch.Tensor, num_heads: int, lam: float, depth: int = 18) -> torch.Tensor:
    net = getattr(torchvision.models, f"resnet{depth}")()
    net.load_state_dict({k: v for k, v in state.items() if not k.startswith("classifier.")}, strict=False)
    net.eval()
    with torch.no_grad():
        feat = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feat = net.layer4(net.layer3(net.layer2(net.layer1(feat))))
        return csra_logits(feat, state, num_heads, lam)


def timm_vit_state(num_heads: int, num_classes: int, seed: int = 0, tokens: int | None = None) -> dict:
    """A VIT_CSRA state dict in the timm/JAX naming for TINY_VIT (random weights)."""
    gen = torch.Generator().manual_seed(seed)
    d, m, p = TINY_VIT["hidden_dim"], TINY_VIT["mlp_dim"], TINY_VIT["patch_size"]
    tokens = tokens or (TINY_VIT["image_size"] // p) ** 2 + 1

    def r(*shape, scale=0.2):
        return torch.randn(*shape, generator=gen) * scale

    state = {"cls_token": r(1, 1, d), "pos_embed": r(1, tokens, d),
             "patch_embed.proj.weight": r(d, 3, p, p, scale=0.05), "patch_embed.proj.bias": r(d)}
    for i in range(TINY_VIT["num_layers"]):
        b = f"blocks.{i}."
        state.update({
            b + "norm1.weight": 1 + r(d), b + "norm1.bias": r(d),
            b + "attn.qkv.weight": r(3 * d, d), b + "attn.qkv.bias": r(3 * d),
            b + "attn.proj.weight": r(d, d), b + "attn.proj.bias": r(d),
            b + "norm2.weight": 1 + r(d), b + "norm2.bias": r(d),
            b + "mlp.fc1.weight": r(m, d), b + "mlp.fc1.bias": r(m),
            b + "mlp.fc2.weight": r(d, m), b + "mlp.fc2.bias": r(d),
        })
    state.update({"norm.weight": 1 + r(d), "norm.bias": r(d)})
    return {**state, **head_weights(num_heads, num_classes, d, gen)}


def timm_vit_features(state: dict, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
    """The timm ViT forward (pre-norm blocks, eps 1e-6), patch tokens after the final norm as (B, D, h, w)."""
    d, heads = TINY_VIT["hidden_dim"], TINY_VIT["num_heads"]
    t = F.conv2d(x, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=TINY_VIT["patch_size"])
    b, _, h, w = t.shape
    t = torch.cat([state["cls_token"].expand(b, -1, -1), t.flatten(2).transpose(1, 2)], dim=1)
    t = t + (state["pos_embed"] if pos is None else pos)
    n = t.shape[1]
    for i in range(TINY_VIT["num_layers"]):
        s = {k[len(f"blocks.{i}."):]: v for k, v in state.items() if k.startswith(f"blocks.{i}.")}
        y = F.layer_norm(t, (d,), s["norm1.weight"], s["norm1.bias"], eps=1e-6)
        q, k, v = F.linear(y, s["attn.qkv.weight"], s["attn.qkv.bias"]).reshape(b, n, 3, heads, d // heads).permute(
            2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(dim=-1)
        t = t + F.linear((attn @ v).transpose(1, 2).reshape(b, n, d), s["attn.proj.weight"], s["attn.proj.bias"])
        y = F.layer_norm(t, (d,), s["norm2.weight"], s["norm2.bias"], eps=1e-6)
        t = t + F.linear(F.gelu(F.linear(y, s["mlp.fc1.weight"], s["mlp.fc1.bias"])), s["mlp.fc2.weight"],
                         s["mlp.fc2.bias"])
    t = F.layer_norm(t, (d,), state["norm.weight"], state["norm.bias"], eps=1e-6)
    return t[:, 1:].transpose(1, 2).reshape(b, d, h, w)


def official_test_images(paths, size: int, mean, std, boxes=None) -> torch.Tensor:
    """The official evaluation's input: PIL image, RGB, (person crop), torchvision's (v1) Resize((size, size)) on
    the PIL image, ToTensor, Normalize — written from the official code, without any csra code."""
    from PIL import Image
    from torchvision import transforms

    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                    transforms.Normalize(list(mean), list(std))])
    images = []
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        if boxes is not None:
            x, y, w, h = boxes[i]
            image = image.crop([x, y, x + w, y + h])
        images.append(transform(image))
    return torch.stack(images)
