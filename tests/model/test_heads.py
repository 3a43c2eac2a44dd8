import math

import pytest
import torch

from csra.errors import CSRAError
from csra.model.heads import CSRA, TEMPERATURES, GAPHead, MultiHeadCSRA, build_head


def reference_csra(x: torch.Tensor, weight: torch.Tensor, temperature: float, lam: float) -> torch.Tensor:
    """The paper's equations, location by location, written independently of csra.model.heads."""
    batch, channels, height, width = x.shape
    num_classes = weight.shape[0]
    w = weight.view(num_classes, channels)
    out = torch.zeros(batch, num_classes, dtype=torch.float64)
    for b in range(batch):
        for k in range(num_classes):
            norm = math.sqrt(sum(float(v) ** 2 for v in w[k]))
            scores = [float(w[k] @ x[b, :, i, j]) / norm for i in range(height) for j in range(width)]
            base = sum(scores) / len(scores)
            if temperature == 99:
                att = max(scores)
            else:
                exps = [math.exp(temperature * s) for s in scores]
                att = sum(s * e for s, e in zip(scores, exps)) / sum(exps)
            out[b, k] = base + lam * att
    return out


@pytest.mark.parametrize("temperature", [1, 2, 4.5, 99])
@pytest.mark.parametrize("lam", [0.0, 0.1, 0.5])
def test_single_head_matches_equations(temperature, lam):
    torch.manual_seed(0)
    head = CSRA(in_channels=6, num_classes=3, temperature=temperature, lam=lam).double()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    expected = reference_csra(x, head.head.weight.detach(), temperature, lam)
    torch.testing.assert_close(head(x).detach(), expected, rtol=0, atol=1e-10)


def test_head_has_no_bias_and_official_key():
    head = MultiHeadCSRA(8, 5, num_heads=1, lam=0.1)
    assert list(head.state_dict()) == ["multi_head.0.head.weight"]
    assert head.multi_head[0].head.weight.shape == (5, 8, 1, 1)


@pytest.mark.parametrize("num_heads", [1, 2, 4, 6, 8])
def test_multi_head_is_sum_over_paper_temperatures(num_heads):
    torch.manual_seed(num_heads)
    model = MultiHeadCSRA(4, 3, num_heads=num_heads, lam=0.3).double()
    temps = [h.temperature for h in model.multi_head]
    assert temps == {1: [1], 2: [1, 99], 4: [1, 2, 4, 99], 6: [1, 2, 3, 4, 5, 99], 8: [1, 2, 3, 4, 5, 6, 7, 99]}[
        num_heads
    ]
    x = torch.randn(2, 4, 2, 3, dtype=torch.float64)
    expected = sum(reference_csra(x, h.head.weight.detach(), h.temperature, 0.3) for h in model.multi_head)
    torch.testing.assert_close(model(x).detach(), expected, rtol=0, atol=1e-10)


def test_max_pool_head_equals_large_temperature_limit():
    torch.manual_seed(1)
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64)
    hard = CSRA(4, 2, 99, 1.0).double()
    soft = CSRA(4, 2, 1e4, 1.0).double()
    soft.load_state_dict(hard.state_dict())
    torch.testing.assert_close(hard(x), soft(x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("num_heads", [0, 3, 5, 16])
def test_unsupported_head_count_lists_allowed(num_heads):
    with pytest.raises(CSRAError, match="num_heads must be one of 1, 2, 4, 6, 8"):
        MultiHeadCSRA(4, 3, num_heads=num_heads, lam=0.1)
    assert set(TEMPERATURES) == {1, 2, 4, 6, 8}


def test_gap_baseline_is_a_linear_classifier_with_bias_on_the_mean_feature():
    torch.manual_seed(2)
    head = GAPHead(in_channels=6, num_classes=3).double()
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64)
    weight, bias = head.fc.weight.detach(), head.fc.bias.detach()
    expected = x.mean(dim=(2, 3)) @ weight.T + bias  # no norm division, no attention: not CSRA with λ = 0
    torch.testing.assert_close(head(x).detach(), expected, rtol=0, atol=1e-12)
    assert sorted(head.state_dict()) == ["fc.bias", "fc.weight"] and bias.abs().sum() > 0
    csra_lam0 = MultiHeadCSRA(6, 3, num_heads=1, lam=0.0).double()
    csra_lam0.multi_head[0].head.weight.data = weight.view(3, 6, 1, 1).clone()
    assert not torch.allclose(csra_lam0(x), head(x))


@pytest.mark.parametrize("head", [GAPHead(6, 3), MultiHeadCSRA(6, 3, num_heads=4, lam=0.3)])
def test_score_maps_average_to_the_mean_pooled_logit(head):
    x = torch.randn(2, 6, 3, 4)
    maps = head.score_map(x)
    assert maps.shape == (2, 3, 3, 4)
    if isinstance(head, GAPHead):  # the class activation map: its mean is the logit itself
        torch.testing.assert_close(maps.mean(dim=(2, 3)), head(x), rtol=0, atol=1e-5)
    else:  # CSRA: the sum over heads of each head's map
        torch.testing.assert_close(maps, sum(h.score_map(x) for h in head.multi_head), rtol=0, atol=1e-6)


def test_an_unknown_head_lists_the_known_ones():
    with pytest.raises(CSRAError, match="head must be one of csra, gap, got 'fc'"):
        build_head("fc", 6, 3, 1, 0.1)
