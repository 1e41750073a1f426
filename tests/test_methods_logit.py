"""Known answers for DIST, CTKD, PKT, SP, CC and logit standardisation (hand-computed)."""

import math

import pytest
import torch

from kdlens.config import load_config
from kdlens.distill.losses import soft_kl, standardize_logits
from kdlens.distill.methods.cc import cc_consecutive_loss, cc_loss, correlation_matrix
from kdlens.distill.methods.ctkd import (
    ctkd_soft_loss,
    curriculum_strength,
    learned_temperature,
    reverse_gradient,
)
from kdlens.distill.methods.dist import dist_loss, dist_loss_parts, pearson_correlation
from kdlens.distill.methods.dkd import dkd_loss_parts
from kdlens.distill.methods.kd import kd_loss_parts, weighted_kd_loss_parts
from kdlens.distill.methods.pkt import pkt_loss
from kdlens.distill.methods.sp import similarity_matrix, sp_loss
from kdlens.errors import ConfigError

EYE = torch.eye(2)
SAME = torch.tensor([[1.0, 0.0], [1.0, 0.0]])


def test_standardize_logits_z_scores_each_row_with_the_unbiased_std():
    z = standardize_logits(torch.tensor([[1.0, 2.0, 3.0], [10.0, 10.0, 16.0]]))
    # Row 2: mean 12, unbiased std sqrt((4 + 4 + 16) / 2) = sqrt(12).
    expected = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, -2.0, 4.0]])
    expected[1] /= math.sqrt(12)
    assert torch.allclose(z, expected, atol=1e-6)


def test_standardised_soft_term_ignores_each_models_logit_shift_and_scale():
    s, t, y = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    base = kd_loss_parts(s, t, y, 2.0, 0.3, standardize=True)
    moved = kd_loss_parts(3 * s + 1, 0.5 * t - 2, y, 2.0, 0.3, standardize=True)
    assert float(moved["kd"]) == pytest.approx(float(base["kd"]), rel=1e-5)
    expected_kd = 0.7 * 4 * soft_kl(standardize_logits(s), standardize_logits(t), 2.0)
    assert float(base["kd"]) == pytest.approx(float(expected_kd), rel=1e-6)
    # The hard-label term keeps the raw logits.
    assert float(base["ce"]) == pytest.approx(float(kd_loss_parts(s, t, y, 2.0, 0.3)["ce"]))
    weighted = weighted_kd_loss_parts(s, t, y, 2.0, torch.full((6,), 0.3), standardize=True)
    assert float(weighted["kd"]) == pytest.approx(float(base["kd"]), rel=1e-5)
    dkd = dkd_loss_parts(3 * s, t + 1, y, 2.0, standardize=True)
    assert float(dkd["nckd"]) == pytest.approx(
        float(dkd_loss_parts(s, t, y, 2.0, standardize=True)["nckd"]), rel=1e-5
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("yes please", "logit_standardization must be true or false"),
        (1, "logit_standardization must be true or false"),
    ],
)
def test_logit_standardization_must_be_a_boolean(value, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [f"distill.options.logit_standardization={value}"])
    assert "\n" not in str(err.value)


def test_options_are_a_method_mapping_or_a_global_boolean():
    config = load_config(None, ["distill.options={logit_standardization: true, dkd: {nckd: 2}}"])
    assert config.distill.logit_standardization
    assert config.distill.options_of("dkd") == {"nckd": 2}
    assert config.distill.options_of("logit_standardization") == {}
    with pytest.raises(ConfigError, match="kd must map kd's option names") as err:
        load_config(None, ["distill.options.kd=3"])
    assert "\n" not in str(err.value)


def test_dist_known_answer():
    # Rows (and columns) of the student's probabilities are the teacher's reversed: every
    # correlation is -1, so each relation loss is 1 - (-1) = 2.
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    parts = dist_loss_parts(t.flip(1), t, temperature=1.0)
    assert float(parts["inter"]) == pytest.approx(2.0, rel=1e-6)
    assert float(parts["intra"]) == pytest.approx(2.0, rel=1e-6)
    assert float(dist_loss(t, t, 1.0, beta=2.0, gamma=5.0)) == pytest.approx(0.0, abs=1e-5)
    assert float(dist_loss_parts(t.flip(1), t, temperature=2.0)["inter"]) == pytest.approx(8.0)


def test_pearson_correlation_ignores_shift_and_scale():
    a = torch.randn(4, 7)
    assert torch.allclose(pearson_correlation(a, 3 * a + 2), torch.ones(4), atol=1e-6)
    assert float(pearson_correlation(torch.ones(1, 7), a[:1])) == 0.0  # constant row: 0, not NaN


def test_ctkd_curriculum_and_learned_temperature():
    assert curriculum_strength(0, 10) == 0.0
    assert curriculum_strength(5, 10) == pytest.approx(0.5)
    assert curriculum_strength(10, 10) == curriculum_strength(30, 10) == pytest.approx(1.0)
    assert curriculum_strength(10, 10, max_strength=0.5) == pytest.approx(0.5)
    theta = torch.ones(1, requires_grad=True)
    t = learned_temperature(theta, 0.0).detach()
    assert float(t) == pytest.approx(1 + 20 / (1 + math.exp(-1)))


def test_ctkd_temperature_climbs_the_loss_the_student_descends():
    s = torch.randn(5, 4, requires_grad=True)
    teacher = torch.randn(5, 4)
    theta = torch.zeros(1, requires_grad=True)
    ctkd_soft_loss(s, teacher, learned_temperature(theta, 0.7)).backward()
    reversed_grad = theta.grad.clone()
    theta.grad = None
    ctkd_soft_loss(s, teacher, 1 + 20 * torch.sigmoid(theta)).backward()
    assert torch.allclose(reversed_grad, -0.7 * theta.grad)
    x = torch.ones(2, requires_grad=True)
    (3 * reverse_gradient(x, 2.0)).sum().backward()
    assert torch.equal(x.grad, torch.full((2,), -6.0))


def test_ctkd_soft_loss_is_kd_at_the_given_temperature():
    s, t = torch.randn(5, 4), torch.randn(5, 4)
    expected = 9 * soft_kl(s, t, 3.0)
    assert float(ctkd_soft_loss(s, t, torch.tensor([3.0]))) == pytest.approx(float(expected))


def test_pkt_known_answer():
    # Student: orthogonal pair -> (cos + 1) / 2 = [[1, .5], [.5, 1]] -> rows [2/3, 1/3], [1/3, 2/3].
    # Teacher: equal pair -> rows [1/2, 1/2]. Mean over the 4 entries of p_t log(p_t / p_s).
    expected = 2 * (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3))) / 4
    assert float(pkt_loss(EYE, SAME)) == pytest.approx(expected, rel=1e-5)
    assert float(pkt_loss(SAME, SAME)) == pytest.approx(0.0, abs=1e-7)
    assert float(pkt_loss(2 * EYE, EYE)) == pytest.approx(0.0, abs=1e-6)  # scale-free


def test_sp_known_answer():
    # G_s = I (rows already unit); G_t = ones, rows [1, 1] / sqrt2.
    # ||G_t - G_s||^2 = 2 ((1 - 1/sqrt2)^2 + 1/2) = 2 (2 - sqrt2); divided by B^2 = 4.
    assert torch.allclose(similarity_matrix(SAME), torch.full((2, 2), 1 / math.sqrt(2)))
    assert float(sp_loss(EYE, SAME)) == pytest.approx((2 - math.sqrt(2)) / 2, rel=1e-6)
    maps = torch.randn(3, 4, 2, 2)
    assert float(sp_loss(maps, 5 * maps.flatten(1))) == pytest.approx(0.0, abs=1e-6)


def test_cc_known_answers():
    # Bilinear: C_s = I, C_t = ones; ||I - ones||_F = sqrt2, over B^2 = 4.
    assert float(cc_loss(EYE, SAME, "bilinear")) == pytest.approx(math.sqrt(2) / 4)
    # Gaussian: for unit rows the Taylor series tends to exp(-gamma ||a - b||^2).
    e = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=1)
    exact = torch.exp(-0.4 * torch.cdist(e, e) ** 2)
    assert torch.allclose(correlation_matrix(e, "gaussian", 0.4, order=12), exact, atol=1e-9)
    two = math.exp(-0.8) * (1 + 0.8 * e @ e.t() + 0.32 * (e @ e.t()) ** 2)
    assert torch.allclose(correlation_matrix(e, "gaussian", 0.4, order=2), two)
    # Consecutive (RepDistiller): |s - t| rows [1, 2], [3, 1], [0, 1] -> (1*3 + 2*1 + 3*0 + 1*1)/2.
    s = torch.tensor([[1.0, 2.0], [3.0, 1.0], [0.0, 1.0]])
    assert float(cc_consecutive_loss(s, torch.zeros(3, 2))) == pytest.approx(3.0)
    assert float(cc_consecutive_loss(s[:1], torch.zeros(1, 2))) == 0.0
