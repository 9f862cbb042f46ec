"""NT-Xent against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from baselines.losses import nt_xent


def test_nt_xent_2x2_aligned() -> None:
    # a_i == b_i, orthogonal pairs: each anchor sees its positive at cos 1, two negatives at cos 0
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.exp(2.0) / (math.exp(2.0) + 2.0))  # = log(1 + 2 e^-2)
    assert float(nt_xent(a, a.clone(), temperature=0.5)) == pytest.approx(expected, rel=1e-6)


def test_nt_xent_2x2_swapped_and_scale_invariant() -> None:
    # positives orthogonal (cos 0); one negative at cos 1 (the other view's other item)
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 3.0], [2.0, 0.0]])
    expected = -math.log(1.0 / (1.0 + 1.0 + math.exp(2.0)))
    assert float(nt_xent(a, b, temperature=0.5)) == pytest.approx(expected, rel=1e-6)


def test_nt_xent_temperature_and_gradient() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    expected = math.log(1 + 2 * math.exp(-1.0))  # temperature 1
    loss = nt_xent(a, torch.eye(2), temperature=1.0)
    assert float(loss.detach()) == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    assert float(nt_xent(torch.ones(1, 4), torch.ones(1, 4))) == pytest.approx(0.0, abs=1e-6)
