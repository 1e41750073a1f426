"""Golden values for the feature, relational, decoupled and adaptive losses (hand-computed)."""

import math

import pytest
import torch

from kdlens.distill.losses import soft_kl
from kdlens.distill.methods.at import attention_map, attention_transfer_loss
from kdlens.distill.methods.dkd import dkd_loss, dkd_loss_parts
from kdlens.distill.methods.fitnets import hint_loss
from kdlens.distill.methods.kd import confidence_alpha, kd_loss_parts, weighted_kd_loss_parts
from kdlens.distill.methods.rkd import rkd_angle_loss, rkd_distance_loss
from kdlens.distill.schedules import schedule_value


def test_hint_loss_is_mean_squared_error():
    assert float(hint_loss(torch.tensor([[1.0, 2.0]]), torch.zeros(1, 2))) == pytest.approx(2.5)


def test_attention_transfer_golden():
    # One channel, 1x2 map. Student |A|^2 = [1, 4] -> [1, 4]/sqrt(17); teacher [4, 1]/sqrt(17).
    # Squared differences 9/17 and 9/17, mean 9/17.
    s = torch.tensor([1.0, 2.0]).view(1, 1, 1, 2)
    t = torch.tensor([2.0, 1.0]).view(1, 1, 1, 2)
    assert torch.allclose(attention_map(s), torch.tensor([[1.0, 4.0]]) / math.sqrt(17))
    assert float(attention_transfer_loss(s, t)) == pytest.approx(9 / 17)


def test_attention_ignores_channel_count_and_pools_to_the_smaller_map():
    t = torch.rand(2, 8, 4, 4)
    s = t[:, :1].repeat(1, 3, 1, 1)  # 3 identical channels: same map as a 1-channel teacher
    assert float(attention_transfer_loss(s, t[:, :1])) == pytest.approx(0.0, abs=1e-7)
    big = t.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # 8x8 upsampled copy
    assert float(attention_transfer_loss(big, t)) == pytest.approx(0.0, abs=1e-7)


S3 = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
T3 = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]])


def test_rkd_distance_golden():
    # Student pair distances 1, 1, sqrt2 (mean (2+sqrt2)/3); teacher 2, 1, sqrt5 (mean (3+sqrt5)/3).
    s = [d * 3 / (2 + math.sqrt(2)) for d in (1, 1, math.sqrt(2))]
    t = [d * 3 / (3 + math.sqrt(5)) for d in (2, 1, math.sqrt(5))]
    # Huber (|x| < 1: x^2 / 2) over the 3x3 matrix: each pair twice, the zero diagonal counts.
    expected = 2 * sum(0.5 * (a - b) ** 2 for a, b in zip(s, t, strict=True)) / 9
    assert float(rkd_distance_loss(S3, T3)) == pytest.approx(expected, rel=1e-5)


def test_rkd_angle_golden():
    # Angles at points 1 and 2 differ: student cos 1/sqrt2 at both; teacher 2/sqrt5 and 1/sqrt5.
    # Each appears twice among the 27 (a, b, c) entries; the right angle at point 0 agrees.
    d1, d2 = 1 / math.sqrt(2) - 2 / math.sqrt(5), 1 / math.sqrt(2) - 1 / math.sqrt(5)
    expected = (d1**2 + d2**2) / 27  # 2 * 0.5 * d^2 each
    assert float(rkd_angle_loss(S3, T3)) == pytest.approx(expected, rel=1e-5)


def test_rkd_is_invariant_to_scale_and_shift_and_flows_to_the_student_only():
    s = torch.randn(6, 5, requires_grad=True)
    t = 3.0 * s.detach() + 1.0
    assert float(rkd_distance_loss(s, t).detach()) == pytest.approx(0.0, abs=1e-6)
    assert float(rkd_angle_loss(s, t).detach()) == pytest.approx(0.0, abs=1e-6)
    t2 = torch.randn(6, 7, requires_grad=True)  # a different width is fine
    (rkd_distance_loss(s, t2) + rkd_angle_loss(s, t2)).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and t2.grad is None


def test_dkd_golden():
    # T = 1, gt = 0: teacher [1/2, 1/4, 1/4], student [1/4, 1/2, 1/4].
    # TCKD = KL([1/2, 1/2] || [1/4, 3/4]); NCKD = KL([1/2, 1/2] || [2/3, 1/3]).
    t = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    s = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))
    gt = torch.tensor([0])
    parts = dkd_loss_parts(s, t, gt, 1.0)
    tckd = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    nckd = 0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))
    assert float(parts["tckd"]) == pytest.approx(tckd, rel=1e-5)
    assert float(parts["nckd"]) == pytest.approx(nckd, rel=1e-5)
    assert float(dkd_loss(s, t, gt, 1.0, alpha=2.0, beta=3.0)) == pytest.approx(
        2 * tckd + 3 * nckd, rel=1e-5
    )


def test_dkd_decomposes_kd_exactly():
    # Zhao et al., eq. 5: KL = TCKD + (1 - p_t,gt) NCKD, per example.
    torch.manual_seed(1)
    s, t = torch.randn(1, 5), torch.randn(1, 5) * 3
    gt, temp = torch.tensor([2]), 2.0
    parts = dkd_loss_parts(s, t, gt, temp)
    p_gt = torch.softmax(t / temp, -1)[0, 2]
    kd = temp**2 * soft_kl(s, t, temp)
    assert float(parts["tckd"] + (1 - p_gt) * parts["nckd"]) == pytest.approx(float(kd), rel=1e-5)


def test_dkd_gradient_is_finite_with_a_saturated_teacher():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.tensor([[100.0, 0.0, 0.0]] * 4)
    dkd_loss(s, t, torch.tensor([0, 0, 1, 2]), 4.0).backward()
    assert torch.isfinite(s.grad).all()


def test_schedules_golden():
    assert schedule_value("constant", 0.1, 0.5, 0.7) == 0.1
    assert schedule_value("linear", 0.1, 0.5, 0.5) == pytest.approx(0.3)
    assert schedule_value("linear", 0.1, 0.5, 1.0) == pytest.approx(0.5)
    assert schedule_value("cosine", 0.1, 0.5, 0.0) == pytest.approx(0.1)
    assert schedule_value("cosine", 0.1, 0.5, 0.5) == pytest.approx(0.3)
    # 0.5 - 0.4 * (1 + cos(pi/4)) / 2
    assert schedule_value("cosine", 0.1, 0.5, 0.25) == pytest.approx(0.5 - 0.2 * (1 + 0.5**0.5))


def test_confidence_alpha_leans_on_a_confident_right_teacher():
    t = torch.log(torch.tensor([[0.8, 0.2], [0.8, 0.2]]))
    alpha = confidence_alpha(t, torch.tensor([0, 1]), 0.1)
    assert torch.allclose(alpha, torch.tensor([0.1 + 0.9 * 0.2, 0.1 + 0.9 * 0.8]))
    mixed = confidence_alpha(t[:1], torch.tensor([[0.5, 0.5]]), 0.0)  # mixup label
    assert float(mixed) == pytest.approx(0.5)


def test_weighted_kd_with_equal_weights_is_kd():
    torch.manual_seed(2)
    s, t, y = torch.randn(5, 4), torch.randn(5, 4), torch.tensor([0, 1, 2, 3, 0])
    w = weighted_kd_loss_parts(s, t, y, 3.0, torch.full((5,), 0.3))
    ref = kd_loss_parts(s, t, y, 3.0, 0.3)
    for key in ("ce", "kd"):
        assert float(w[key]) == pytest.approx(float(ref[key]), rel=1e-5)
