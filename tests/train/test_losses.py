"""Losses: BCE with label smoothing and the asymmetric loss, against hand-computed values."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import train_config

from csra.errors import CSRAError
from csra.train.losses import asymmetric_loss, make_criterion


def test_asl_without_focusing_or_clip_is_bce():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=gen, dtype=torch.float64) * 3
    targets = torch.randint(0, 2, (4, 6), generator=gen).double()
    torch.testing.assert_close(asymmetric_loss(logits, targets, 0.0, 0.0, 0.0),
                               F.binary_cross_entropy_with_logits(logits, targets), rtol=0, atol=1e-9)


def test_asl_by_hand():
    # one positive with p = 0.8 (γ+ = 1) and one negative with p = 0.3, clip 0.1 → p_m = 0.2 (γ− = 2)
    logits = torch.tensor([[math.log(0.8 / 0.2), math.log(0.3 / 0.7)]])
    loss = asymmetric_loss(logits, torch.tensor([[1.0, 0.0]]), gamma_neg=2.0, gamma_pos=1.0, clip=0.1)
    expected = -((1 - 0.8) * math.log(0.8) + 0.2**2 * math.log(1 - 0.2)) / 2
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_label_smoothing_moves_targets_towards_one_half():
    logits, targets = torch.tensor([[2.0, -1.0]]), torch.tensor([[1.0, 0.0]])
    smoothed = make_criterion(train_config(label_smoothing=0.2))(logits, targets)
    expected = F.binary_cross_entropy_with_logits(logits, torch.tensor([[0.9, 0.1]]))
    assert smoothed.item() == pytest.approx(expected.item(), abs=1e-7)
    assert make_criterion(train_config())(logits, targets).item() == pytest.approx(
        F.binary_cross_entropy_with_logits(logits, targets).item())


def test_unknown_loss_and_bad_smoothing():
    with pytest.raises(CSRAError, match="loss must be one of bce, asl, got 'focal'"):
        train_config(loss="focal")
    with pytest.raises(CSRAError, match="label_smoothing must be < 1, got 1.0"):
        train_config(label_smoothing=1.0)
