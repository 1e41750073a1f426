"""Golden values for the distillation losses, including the corrected worked examples
of the seed article (shared/seed/ERRATA.md, checked against Hinton et al. 2015)."""

import math

import pytest
import torch
import torch.nn.functional as F

from kdlens.distill import kd_loss, kd_loss_parts, soft_kl, soft_targets

Z = torch.tensor([[2.0, 1.0, 0.1]])


@pytest.mark.parametrize(
    "T, expected",
    [
        (1.0, [0.6590, 0.2424, 0.0986]),
        (4.0, [0.4165, 0.3244, 0.2590]),
        (20.0, [0.3496, 0.3325, 0.3179]),
    ],
)
def test_soft_targets_errata(T, expected):
    p = soft_targets(Z, T)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert p[0].tolist() == pytest.approx(expected, abs=1e-4)


def test_ce_entropy_kl_worked_example():
    y = soft_targets(Z, 1.0)[0]
    s = torch.tensor([0.6, 0.3, 0.1])
    ce = -(y * s.log()).sum()
    h = -(y * y.log()).sum()
    kl = soft_kl(s.log()[None], Z, 1.0)
    assert ce.item() == pytest.approx(0.8555, abs=1e-4)
    assert h.item() == pytest.approx(0.8467, abs=1e-4)
    assert kl.item() == pytest.approx(0.0087, abs=1e-4)
    assert kl.item() == pytest.approx((ce - h).item(), abs=1e-6)  # CE = H + KL for a fixed teacher


def test_uniform_two_class_cross_entropy_is_ln2():
    assert F.cross_entropy(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(
        math.log(2)
    )


def test_kl_is_batchmean_of_per_example_kl():
    s, t = torch.randn(8, 5), torch.randn(8, 5)
    T = 3.0
    p_t, p_s = F.softmax(t / T, -1), F.softmax(s / T, -1)
    manual = (p_t * (p_t.log() - p_s.log())).sum(-1).mean()
    assert soft_kl(s, t, T).item() == pytest.approx(manual.item(), rel=1e-5)
    assert soft_kl(t, t, T).item() == pytest.approx(0.0, abs=1e-7)
    assert soft_kl(s, t, T).item() > 0


def test_kd_loss_mixes_hard_ce_and_scaled_kl():
    s, t, y = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    T, alpha = 4.0, 0.3
    expected = alpha * F.cross_entropy(s, y) + (1 - alpha) * T**2 * soft_kl(s, t, T)
    assert kd_loss(s, t, y, T, alpha).item() == pytest.approx(expected.item(), rel=1e-6)
    assert kd_loss(s, t, y, T, 1.0).item() == pytest.approx(F.cross_entropy(s, y).item(), rel=1e-6)
    parts = kd_loss_parts(s, t, y, T, 0.0)
    assert parts["ce"].item() == 0.0
    assert parts["kd"].item() == pytest.approx(T**2 * soft_kl(s, t, T).item(), rel=1e-6)


def test_kd_loss_golden_value():
    s = torch.tensor([[0.5, -0.2, 1.0]])
    y = torch.tensor([0])
    # alpha*CE(y, s) + (1-alpha)*T^2*KL(softmax(Z/2) || softmax(s/2)), written out by hand.
    value = kd_loss(s, Z, y, temperature=2.0, alpha=0.5).item()
    p_t = torch.softmax(Z / 2, -1)
    p_s = torch.softmax(s / 2, -1)
    by_hand = 0.5 * -torch.log_softmax(s, -1)[0, 0] + 0.5 * 4 * (p_t * (p_t / p_s).log()).sum()
    assert value == pytest.approx(by_hand.item(), rel=1e-6)
    assert value == pytest.approx(0.8261, abs=1e-4)


def test_kd_loss_accepts_class_distributions_from_mixup():
    s, t = torch.randn(4, 3), torch.randn(4, 3)
    hard = torch.tensor([0, 1, 2, 1])
    one_hot = F.one_hot(hard, 3).float()
    assert kd_loss(s, t, one_hot, 2.0, 0.5).item() == pytest.approx(
        kd_loss(s, t, hard, 2.0, 0.5).item()
    )


def _soft_grad_norm(T: float, scale: bool) -> float:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(64, 10, generator=g, requires_grad=True)
    t = torch.randn(64, 10, generator=g) * 3
    loss = soft_kl(s, t, T) * (T**2 if scale else 1.0)
    loss.backward()
    return s.grad.norm().item()


def test_t_squared_keeps_soft_gradient_scale_stable_across_temperature():
    scaled = [_soft_grad_norm(T, True) for T in (5.0, 10.0, 20.0, 40.0)]
    unscaled = [_soft_grad_norm(T, False) for T in (5.0, 10.0, 20.0, 40.0)]
    # With T^2 the gradient settles to a constant (the logit-matching limit, Hinton et al. §2.1)...
    assert max(scaled) / min(scaled) < 1.3
    # ...without it, it shrinks as 1/T^2: 64x from T=5 to T=40.
    assert unscaled[0] / unscaled[-1] > 40
