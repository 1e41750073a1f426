"""The feature methods' parts with known answers: default layers, losses at fixed points, CRD's bank."""

import math

import pytest
import torch
from torch import nn

from kdlens.data import Batch
from kdlens.distill import create_distiller
from kdlens.distill.hooks import capture
from kdlens.distill.layers import bn_feeding, conv_stages, paired_layers
from kdlens.distill.methods.crd import nce_loss, sample_negatives, update_memory
from kdlens.distill.methods.kdsvd import kdsvd_loss
from kdlens.distill.methods.nst import nst_loss
from kdlens.distill.methods.ofd import ofd_margin, ofd_partial_l2
from kdlens.distill.methods.vid import initial_log_scale, vid_loss
from kdlens.errors import ConfigError
from kdlens.models import create_model

DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)
SMALL = (3, 16, 16)  # CIFAR-like, cheaper to probe


def _cnn(channels=(4, 8)):
    return create_model("cnn", DIGITS, 10, channels=list(channels), hidden=16)


def _resnet(depth=8, channels=(32, 64, 128, 256)):
    return create_model("resnet", CIFAR, 10, depth=depth, channels=list(channels))


def test_conv_stages_of_the_built_in_models():
    cnn = conv_stages(_cnn(), DIGITS)
    assert [(s.name, s.shape, s.pre_relu, s.bn) for s in cnn] == [
        ("features.2", (4, 8, 8), "features.2:input", "features.1"),
        ("features.6", (8, 4, 4), "features.6:input", "features.5"),
    ]
    res = conv_stages(_resnet(depth=14), CIFAR)  # two blocks per stage: the last one's ReLU
    assert [s.name for s in res] == ["layer1", "layer2", "layer3"]
    assert [s.shape for s in res] == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert [s.pre_relu for s in res] == [f"layer{i}.1.relu:input" for i in (1, 2, 3)]
    assert [s.bn for s in res] == [f"layer{i}.1.bn2" for i in (1, 2, 3)]
    assert conv_stages(create_model("mlp", DIGITS, 10, hidden=[8]), DIGITS) == []


def test_a_pre_relu_map_is_the_relus_input_even_in_place():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(inplace=True))
    x = torch.randn(8, 3)
    with capture(model, ["1:input"]) as store:
        out = model(x)
    assert torch.equal(store["1:input"], model[0](x))
    assert (store["1:input"] < 0).any() and (out >= 0).all()


def test_bn_feeding_a_relu_skips_the_projection_shortcut():
    model = _resnet()  # one block per stage: layer2.0 has a conv + BN shortcut, run last
    layers = ["layer2.0.relu:input", "layer2.0.bn1", "layer2"]
    assert bn_feeding(model, SMALL, layers) == ["layer2.0.bn2", "layer2.0.bn1", None]


def test_default_pairs_are_the_deepest_stages_and_errors_are_one_line():
    s, t = paired_layers("nst", _cnn((4,)), _cnn((8, 16)), DIGITS, None, None)
    assert (s, t) == (["features.2"], ["features.6"])
    mlp = create_model("mlp", DIGITS, 10, hidden=[8])
    with pytest.raises(ConfigError, match=r"'nst' needs feature maps .* student \(Sequential\)"):
        paired_layers("nst", mlp, _cnn(), DIGITS, None, None)
    with pytest.raises(ConfigError, match="same length") as err:
        paired_layers("vid", _cnn(), _cnn(), DIGITS, ["features.2"], None)
    assert "\n" not in str(err.value)


def test_nst_is_zero_for_identical_maps():
    f = torch.randn(3, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    loss = nst_loss(f, f.detach())
    loss.backward()
    assert abs(loss.item()) < 1e-12
    assert f.grad.abs().max() < 1e-12


def test_vid_at_a_perfect_mean_is_half_log_variance():
    t = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    log_scale = torch.full((3,), initial_log_scale(5.0, 1e-5), dtype=torch.float64)
    assert vid_loss(t, log_scale, t, 1e-5).item() == pytest.approx(0.5 * math.log(5.0))


def test_ofd_margin_is_the_mean_of_the_negative_part():
    # x ~ N(0, 1): E[x | x < 0] = -sqrt(2 / pi); a BN shift 4 sigma up: P(x < 0) < 0.001 -> -3 sigma
    m = ofd_margin(torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.0, 0.0, 2.0]))
    assert m[0].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)
    assert m[1].item() == pytest.approx(-2 * math.sqrt(2 / math.pi), rel=1e-6)  # |gamma|
    assert m[2].item() == pytest.approx(-1.5)


def test_ofd_partial_l2_ignores_a_student_below_a_negative_teacher():
    margin = torch.tensor([-1.0])
    teacher = torch.tensor([[-3.0, -0.5, 2.0]]).view(1, 1, 1, 3)
    below = torch.tensor([[-5.0, -2.0, 2.0]]).view(1, 1, 1, 3)  # under the margin / the teacher
    assert ofd_partial_l2(below, teacher, margin).item() == 0.0
    above = torch.tensor([[0.0, 0.0, 1.0]]).view(1, 1, 1, 3)
    # (0 - (-1))^2 where t <= m; (0 - (-0.5))^2 where m < t <= 0; (1 - 2)^2 where t > 0
    assert ofd_partial_l2(above, teacher, margin).item() == pytest.approx(1.0 + 0.25 + 1.0)


def test_ofd_partial_l2_gradient_is_autograds():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    margin = torch.tensor([-0.5, -1.0, -0.2], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: ofd_partial_l2(x, t, margin), (s,))


def test_kdsvd_is_zero_when_the_student_copies_the_teacher():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, c, w, w, generator=g) for c, w in ((3, 6), (4, 4))]
    assert kdsvd_loss(maps, maps, 1).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ConfigError, match="2 or more layer pairs"):
        create_distiller("kdsvd", _cnn((4,)), _cnn((4,)), input_shape=DIGITS)


def test_kdsvd_gradient_is_finite_for_a_low_rank_student_map():
    """A small student's ReLU map of rank 1 has repeated zero singular values, where the SVD's
    backward divides by zero (seen training a [8, 16] CNN student on mnist5k): the gradient of
    that map is 0, not NaN, and the other map's gradient is untouched."""
    g = torch.Generator().manual_seed(0)
    teacher = [torch.randn(2, c, 6, 6, generator=g) for c in (4, 8)]
    low_rank = torch.zeros(2, 3, 6, 6)
    low_rank[:, 0, 0, :] = torch.randn(2, 6, generator=g)
    student = [low_rank.requires_grad_(), torch.randn(2, 5, 6, 6, generator=g, requires_grad=True)]
    kdsvd_loss(student, teacher, 1).backward()
    assert all(torch.isfinite(s.grad).all() for s in student)
    assert student[1].grad.abs().sum() > 0


def test_negatives_come_from_other_classes_and_the_positive_first():
    torch.manual_seed(0)
    known = torch.arange(100) % 5  # 5 classes
    index = torch.tensor([0, 7, 13])
    labels = known[index]
    drawn = sample_negatives(index, labels, known, k=200)
    assert drawn.shape == (3, 201)
    assert torch.equal(drawn[:, 0], index)
    assert (known[drawn[:, 1:]] != labels[:, None]).all()
    unknown = known.clone()
    unknown[50:] = -1  # not seen yet: may be negatives of any class
    drawn = sample_negatives(index, labels, unknown, k=2000)[:, 1:]
    assert (unknown[drawn] != labels[:, None]).all() and (drawn >= 50).any()
    # uniform over the other classes' examples: each of the 80 (first row) drawn ~ 2000/80 times
    counts = torch.bincount(sample_negatives(index, labels, known, k=8000)[0, 1:], minlength=100)
    assert counts[known == labels[0]].sum() == 0
    others = counts[known != labels[0]].double()
    assert others.min() > 50 and others.max() < 150
    with pytest.raises(ConfigError, match="2 or more classes"):
        sample_negatives(
            index, torch.zeros(3, dtype=torch.long), torch.zeros(100, dtype=torch.long), 4
        )


def test_memory_update_mixes_and_renormalises_only_the_given_rows():
    memory = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    before = memory.clone()
    v = torch.nn.functional.normalize(torch.randn(2, 4), dim=1)
    update_memory(memory, torch.tensor([1, 4]), v, momentum=0.5)
    expected = torch.nn.functional.normalize(0.5 * before[[1, 4]] + 0.5 * v, dim=1)
    assert torch.allclose(memory[[1, 4]], expected)
    assert torch.equal(memory[[0, 2, 3, 5]], before[[0, 2, 3, 5]])


def test_nce_loss_at_the_noise_level_is_log_2_per_term():
    # Every p = exp(logit) / Z equal to the noise rate m / N: h = 1/2 for every column.
    n, m, log_z = 1000, 9, 3.0
    logits = torch.full((4, m + 1), math.log(m / n) + log_z, dtype=torch.float64)
    assert nce_loss(logits, log_z, n).item() == pytest.approx((m + 1) * math.log(2))


def test_nce_loss_is_the_papers_formula():
    g = torch.Generator().manual_seed(0)
    n, log_z = 50, 2.0
    logits = torch.randn(3, 8, generator=g, dtype=torch.float64)
    p, noise = torch.exp(logits - log_z), 7 / n
    direct = -(torch.log(p[:, 0] / (p[:, 0] + noise)).sum()
               + torch.log(noise / (p[:, 1:] + noise)).sum()) / 3  # fmt: skip
    assert nce_loss(logits, log_z, n).item() == pytest.approx(direct.item(), rel=1e-12)


def test_crd_whole_bank_and_gathered_rows_give_the_same_loss_and_gradient():
    from kdlens.distill.methods.crd import _dense_nce_loss, contrast_logits

    g = torch.Generator().manual_seed(0)
    n, b, k = 30, 3, 20
    memory = torch.randn(n, 5, generator=g, dtype=torch.float64)
    index = torch.randint(n, (b, k + 1), generator=g)
    counts = torch.zeros(b, n, dtype=torch.float64).scatter_add_(
        1, index[:, 1:], torch.ones(b, k, dtype=torch.float64)
    )
    grads = []
    for dense in (True, False):
        v = torch.randn(b, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        v.requires_grad_(True)
        if dense:
            loss = _dense_nce_loss(v, memory, index, counts, 0.1, 2.0, n)
        else:
            loss = nce_loss(contrast_logits(v, memory, index, 0.1), 2.0, n)
        loss.backward()
        grads.append((loss.item(), v.grad))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-12)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-10)


def _batch(x, y, index):
    return Batch(x, y, index)


def test_crd_distiller_updates_only_the_batch_rows_and_sets_z_once():
    torch.manual_seed(0)
    d = create_distiller(
        "crd", _cnn(), _cnn((8, 16)), input_shape=DIGITS, num_examples=50, nce_k=32
    )
    d.train()
    assert torch.all(d.log_normalisers.isnan())
    before = d.memory_s.clone()
    batch = _batch(
        torch.randn(6, *DIGITS), torch.arange(6) % 3, torch.tensor([3, 9, 10, 20, 21, 49])
    )
    out = d(batch)
    out["loss"].backward()  # the bank was updated in place before this
    z = d.log_normalisers.clone()
    assert torch.all(torch.isfinite(z))
    changed = (d.memory_s != before).any(1).nonzero().flatten()
    assert changed.tolist() == [3, 9, 10, 20, 21, 49]
    assert torch.allclose(d.memory_s[changed].norm(dim=1), torch.ones(6))
    assert d.known_labels[batch.index].tolist() == batch.y.tolist()
    d(batch)
    assert torch.equal(d.log_normalisers, z)
    assert {"memory_s", "memory_t", "known_labels", "log_normalisers"} <= set(d.state_dict())
    with pytest.raises(ConfigError, match="beyond the memory bank of 50"):
        d(_batch(batch.x, batch.y, batch.index + 1))
    with pytest.raises(ConfigError, match="number of training examples"):
        create_distiller("crd", _cnn(), _cnn(), input_shape=DIGITS)


def test_resnet_defaults_wire_like_mdistiller_resnet8x4():
    """resnet8x4 student, a ResNet teacher of the same widths: mdistiller's ReviewKD uses
    IN/OUT_CHANNELS [64, 128, 256, 256] and SHAPES [1, 8, 16, 32]; OFD the pre-ReLU maps of each
    stage's last block with the margins of its bn2; CRD the 256-wide pooled embeddings."""
    student, teacher = _resnet(), _resnet(depth=14)
    r = create_distiller("reviewkd", student, teacher, input_shape=SMALL)
    assert r.student_layers == ["layer1", "layer2", "layer3", "fc:input"]
    assert r.teacher_layers == [f"layer{i}.1.relu:input" for i in (1, 2, 3)] + ["fc:input"]
    assert [a.conv1[0].in_channels for a in r.abfs] == [64, 128, 256, 256]
    assert [a.conv2[0].out_channels for a in r.abfs] == [64, 128, 256, 256]
    assert {a.conv1[0].out_channels for a in r.abfs} == {256}
    assert r.out_sizes == [(16, 16), (8, 8), (4, 4), (1, 1)]  # 32x32 in: [32, 16, 8, 1]
    assert [a.att_conv is not None for a in r.abfs] == [True, True, True, False]
    o = create_distiller("ofd", student, teacher, input_shape=SMALL)
    assert o.student_layers == [f"layer{i}.0.relu:input" for i in (1, 2, 3)]
    bn = teacher.layer2[1].bn2
    assert torch.equal(o.margin1, ofd_margin(bn.weight, bn.bias))
    c = create_distiller("crd", student, teacher, input_shape=SMALL, num_examples=10)
    assert c.embed_s.linear.in_features == 256 and c.embed_t.linear.in_features == 256
    for method in ("nst", "vid", "kdsvd"):
        d = create_distiller(method, student, teacher, input_shape=SMALL)
        assert d.student_layers == d.teacher_layers == ["layer1", "layer2", "layer3"]


def test_reviewkd_warms_up_linearly():
    d = create_distiller("reviewkd", _cnn(), _cnn((8, 16)), input_shape=DIGITS, warmup=4)
    d.train()
    batch = _batch(torch.randn(4, *DIGITS), torch.arange(4), torch.arange(4))
    d.set_progress(0, 10)
    first = float(d(batch)["reviewkd"])
    d.set_progress(3, 10)
    full = float(d(batch)["reviewkd"])
    assert first == pytest.approx(full / 4, rel=1e-4)


def test_a_model_without_a_classifier_layer_is_refused_naming_the_option():
    convs = nn.Sequential(nn.Conv2d(1, 10, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ConfigError, match=r"'crd' .* name distill.options.crd.student_layer") as e:
        create_distiller("crd", convs, _cnn(), input_shape=DIGITS, num_examples=10)
    assert "\n" not in str(e.value)
