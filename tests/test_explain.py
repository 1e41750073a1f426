"""Explanations with known answers: identical models agree perfectly, unrelated ones do not."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from kdlens.config import ExplainConfig
from kdlens.data import Normalizer
from kdlens.explain import ExplainInputs, compute_explanations, metrics_keys
from kdlens.explain import attributions as attr
from kdlens.explain import faithfulness as faith
from kdlens.explain import soft_targets as st
from kdlens.models import create_model

SMALL = ExplainConfig(n_examples=40, n_show=2, ig_steps=8, deletion_steps=5, infidelity_samples=3)


def _linear(d: int, k: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, k)).eval()


def test_similarity_matrix_is_mean_probability_per_true_class():
    logits = torch.tensor([[0.0, 0.0, -1e9], [math.log(3), 0.0, -1e9], [0.0, 0.0, -1e9]])
    labels = torch.tensor([0, 0, 1])
    m = st.similarity_matrix(logits, labels, 3)
    np.testing.assert_allclose(m[0, :2], [(0.5 + 0.75) / 2, (0.5 + 0.25) / 2])
    np.testing.assert_allclose(m[1, :2], [0.5, 0.5])
    assert np.isnan(m[2]).all()  # no test examples of class 2
    # At high temperature every row tends to uniform.
    hot = st.similarity_matrix(logits[:, :2], labels, 2, temperature=1e6)
    np.testing.assert_allclose(hot, 0.5, atol=1e-5)


def test_dark_knowledge_distance_zero_for_identical_and_bounded():
    torch.manual_seed(0)
    logits, labels = torch.randn(200, 5) * 3, torch.randint(0, 5, (200,))
    m = st.similarity_matrix(logits, labels, 5)
    assert st.dark_knowledge_distance(m, m.copy()) == pytest.approx(0.0, abs=1e-7)
    other = st.similarity_matrix(torch.randn(200, 5) * 3, labels, 5)
    d = st.dark_knowledge_distance(m, other)
    assert 0.05 < d <= 1.0


def test_entropy_grows_with_temperature_towards_log_k():
    torch.manual_seed(0)
    logits = torch.randn(50, 10) * 5
    h = st.entropy_vs_temperature(logits, [1, 2, 5, 20, 1000])
    assert all(a < b for a, b in zip(h, h[1:], strict=False))
    assert h[-1] == pytest.approx(math.log(10), abs=1e-3)
    assert st.entropy_vs_temperature(torch.zeros(3, 4), [1.0])[0] == pytest.approx(math.log(4))


def test_cluster_order_keeps_similar_classes_together():
    # Classes {0, 2} and {1, 3} confuse each other; the leaf order must keep each pair adjacent.
    m = np.full((4, 4), 0.01)
    np.fill_diagonal(m, 0.8)
    m[0, 2] = m[2, 0] = m[1, 3] = m[3, 1] = 0.18
    order, linkage = st.cluster_classes(m)
    assert sorted(order) == [0, 1, 2, 3] and len(linkage) == 3
    pos = {c: i for i, c in enumerate(order)}
    assert abs(pos[0] - pos[2]) == 1 and abs(pos[1] - pos[3]) == 1


def test_identical_attributions_agree_perfectly():
    model = create_model("cnn", (1, 8, 8), 4, channels=[4], hidden=8).eval()
    twin = copy.deepcopy(model)
    x, target = torch.randn(6, 1, 8, 8), torch.randint(0, 4, (6,))
    base = torch.zeros(1, 1, 8, 8)
    for method in attr.METHODS:
        a = attr.attribute(model, method, x, target, base, ig_steps=8)
        b = attr.attribute(twin, method, x, target, base, ig_steps=8)
        assert a.shape == x.shape
        agree = attr.agreement(a, b, 0.1)
        assert agree["spearman"] == pytest.approx(1.0)
        assert agree["cosine"] == pytest.approx(1.0)
        assert agree["topk_overlap"] == 1.0


def test_unrelated_random_models_agree_near_zero():
    # Inputs of magnitude 1 everywhere, so IG = x * w differs only through the weights.
    d, k = 400, 5
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 2, (60, d), generator=g).float() * 2 - 1
    target = torch.randint(0, k, (60,), generator=g)
    base = torch.zeros(1, d)
    a = attr.attribute(_linear(d, k, 0), "integrated_gradients", x, target, base, 16)
    b = attr.attribute(_linear(d, k, 1), "integrated_gradients", x, target, base, 16)
    agree = attr.agreement(a, b, 0.1)
    assert abs(agree["spearman"]) < 0.05 and abs(agree["cosine"]) < 0.05
    assert agree["topk_overlap"] < 0.2  # chance level is 0.1


def test_grad_cam_only_for_conv_models():
    x, t, base = torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.zeros(1, 1, 8, 8)
    assert (
        attr.attribute(create_model("mlp", (1, 8, 8), 3, hidden=[4]), "grad_cam", x, t, base)
        is None
    )
    cnn = create_model("cnn", (1, 8, 8), 3, channels=[4], hidden=8).eval()
    assert attr.last_conv_layer(cnn)[0] == "features.0"
    assert (attr.attribute(cnn, "grad_cam", x, t, base) >= 0).all()


def test_deletion_curve_faster_than_random_and_infidelity_of_gradient_is_zero():
    d, k = 50, 3
    model = _linear(d, k, 0)
    x = torch.randn(80, d)
    y = model(x).argmax(-1)  # the model is right on every example before deletion
    base = torch.zeros(1, d)
    ig = attr.attribute(model, "integrated_gradients", x, y, base, 16)
    fr, acc = faith.deletion_curve(model, x, y, ig, base, steps=10)
    _, rnd = faith.deletion_curve(model, x, y, ig, base, steps=10, order="random")
    assert fr[0] == 0.0 and fr[-1] == 1.0 and acc[0] == 1.0
    assert acc[-1] == rnd[-1]  # everything removed: both see only the baseline
    assert faith.area_under(fr, acc) < faith.area_under(fr, rnd)
    # For a linear model the gradient predicts f(x) - f(x - eps) exactly (Yeh et al. 2019).
    grad = model[1].weight[y].detach()
    assert faith.infidelity(model, x, y, grad, 5, 0.1) == pytest.approx(0.0, abs=1e-8)
    assert faith.infidelity(model, x, y, torch.randn(80, d), 5, 0.1) > 1e-4


def test_output_change_and_what_survives_without_positive_attributions():
    d = 50
    model = _linear(d, 3, 0)
    x = torch.randn(400, d)
    y = model(x).argmax(-1)
    # A linear model's logit changes by w_y . eps: its mean square is noise^2 |w_y|^2.
    expected = float((0.1**2 * (model[1].weight.detach()[y] ** 2).sum(1)).mean())
    assert faith.output_change(model, x, y, 20, 0.1) == pytest.approx(expected, rel=0.05)
    identity = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        identity[1].weight.copy_(torch.eye(2))  # logits = x
    x2, base = torch.tensor([[2.0, 1.0], [2.0, 1.0]]), torch.zeros(1, 2)
    a = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # the first removes class 0's evidence
    assert faith.kept_without_positive(identity, x2, a, base) == (0.5, 0.5)


def _inputs(student_seed: int | None, class_names=None) -> ExplainInputs:
    torch.manual_seed(0)
    x = torch.rand(60, 1, 8, 8)
    y = torch.randint(0, 3, (60,))
    teacher = create_model("cnn", (1, 8, 8), 3, channels=[4], hidden=8).eval()
    if student_seed is None:
        student = copy.deepcopy(teacher)
    else:
        torch.manual_seed(student_seed)
        student = create_model("mlp", (1, 8, 8), 3, hidden=[16]).eval()
    norm = Normalizer(torch.full((1, 1, 1), 0.5), torch.full((1, 1, 1), 0.3))
    models = {"teacher": teacher, "kd": student}
    with torch.no_grad():
        logits = {n: m(norm(x)) for n, m in models.items()}
    return ExplainInputs(
        x=x,
        y=y,
        normalizer=norm,
        kind="image",
        class_names=class_names or ["a", "b", "c"],
        temperature=4.0,
        config=SMALL,
        test_logits=logits,
        models=models,
    )


def test_student_identical_to_teacher_end_to_end():
    explain = compute_explanations(_inputs(None))
    keys = metrics_keys(explain)["kd"]
    assert keys["attribution_agreement"]["spearman"] == pytest.approx(1.0)
    assert keys["attribution_agreement"]["topk_overlap"] == 1.0
    assert keys["dark_knowledge_distance"] == pytest.approx(0.0, abs=1e-7)
    assert keys["deletion_auc"] == explain["faithfulness"]["teacher"]["deletion_auc"]
    assert (
        explain["disagreements"]["counts"]["kd"] == 0 and explain["disagreements"]["examples"] == []
    )
    # Grad-CAM for the conv teacher only... and for its identical copy.
    assert set(explain["attributions"]["maps"]["teacher"]) == set(attr.METHODS)


def test_random_student_end_to_end_is_far_from_teacher():
    explain = compute_explanations(_inputs(7))
    keys = metrics_keys(explain)["kd"]
    assert abs(keys["attribution_agreement"]["spearman"]) < 0.3
    assert keys["dark_knowledge_distance"] > 0.01
    assert "grad_cam" not in explain["attributions"]["maps"]["kd"]  # an MLP has no conv layer
    n = explain["attributions"]["n_examples"]
    assert n == SMALL.n_examples and len(explain["attributions"]["examples"]) == SMALL.n_show
