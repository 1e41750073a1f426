"""kdlens's feature losses against values computed by mdistiller and torchdistill (tests/golden/).

Each test rebuilds the inputs its golden script used (tests/golden/features_common.py), runs
kdlens's pure loss, and compares the loss and the gradients with the stored values (relative error
<= 1e-5). Regenerate with the scripts; see tests/golden/README.md (feature methods).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from kdlens.distill.features import match_spatial
from kdlens.distill.methods.at import attention_transfer_loss
from kdlens.distill.methods.crd import (
    Embed,
    contrast_logits,
    crd_loss,
    log_normaliser,
    update_memory,
)
from kdlens.distill.methods.fitnets import make_regressor
from kdlens.distill.methods.kdsvd import kdsvd_loss
from kdlens.distill.methods.nst import nst_loss
from kdlens.distill.methods.ofd import make_connector, ofd_loss, ofd_margin
from kdlens.distill.methods.reviewkd import ABF, hcl_loss, review
from kdlens.distill.methods.vid import make_vid_regressor, vid_loss
from tests.golden import features_common as G

REL = 1e-5


def close(got: float, want: float, scale: float = 0.0) -> bool:
    """Relative error <= REL, against ``want`` or, for entries near 0, the tensor's norm."""
    return abs(got - want) <= REL * max(abs(want), scale, 1e-12)


def assert_summary(tensor: torch.Tensor, want: dict, what: str) -> None:
    got = G.summary(tensor)
    assert got["shape"] == want["shape"], what
    scale = want["norm"]
    for key in ("norm", "sum", "ramp"):
        assert close(got[key], want[key], scale), (what, key, got[key], want[key])
    for g, w in zip(got["first"], want["first"], strict=True):
        assert close(g, w, scale), (what, "entries", got["first"], want["first"])


def assert_loss_and_grads(loss, student, want, what):
    assert close(loss.item(), want["loss"]), (what, loss.item(), want["loss"])
    loss.backward()
    for i, (x, w) in enumerate(zip(student, want["grads"], strict=True)):
        assert_summary(x.grad, w, f"{what}: gradient of student feature {i}")


CASES = {"same_size": G.TEACHER_MAPS, "pooled": G.TEACHER_MAPS_LARGER}


@pytest.mark.parametrize("case", CASES)
def test_nst_matches_mdistiller(case):
    s, t = G.feature_pairs(1, CASES[case])
    s = G.leaves(s)
    loss = sum(nst_loss(a, b) for a, b in zip(s, t, strict=True))
    assert_loss_and_grads(loss, s, G.read("nst", "mdistiller")[case], f"nst {case}")


@pytest.mark.parametrize("case", CASES)
def test_at_matches_mdistiller(case):
    """mdistiller sums the layer pairs' terms; kdlens's distiller averages them (its ``weight``
    is spread over the pairs), so the pure loss is compared as a sum."""
    s, t = G.feature_pairs(2, CASES[case])
    s = G.leaves(s)
    loss = sum(attention_transfer_loss(a, b) for a, b in zip(s, t, strict=True))
    assert_loss_and_grads(loss, s, G.read("at", "mdistiller")[case], f"at {case}")


def test_at_matches_torchdistill():
    s, t = G.feature_pairs(2)
    s = G.leaves(s)
    loss = sum(attention_transfer_loss(a, b) for a, b in zip(s, t, strict=True))
    assert_loss_and_grads(loss, s, G.read("at", "torchdistill"), "at")


def test_fitnets_matches_mdistiller():
    """mdistiller's ConvReg has a conv bias before its BN; in training mode the BN removes any
    constant per channel, so kdlens's bias-free 1x1 conv gives the same values and gradients."""
    s, t = G.feature_pairs(9)
    s, t = G.leaves(s[:1])[0], t[0]
    w = G.fitnets_weights(10, G.STUDENT_MAPS[0][1], G.TEACHER_MAPS[0][1])
    reg = make_regressor(G.STUDENT_MAPS[0][1:], G.TEACHER_MAPS[0][1:]).double()
    with torch.no_grad():
        reg[0].weight.copy_(w["conv_weight"])
        reg[1].weight.copy_(w["bn_weight"])
        reg[1].bias.copy_(w["bn_bias"])
    loss = F.mse_loss(reg(s), t)
    assert_loss_and_grads(loss, [s], G.read("fitnets", "mdistiller"), "fitnets")


def test_kdsvd_matches_mdistiller():
    s = G.leaves(G.maps(3, G.SVD_STUDENT, torch.float32))
    t = G.maps(4, G.SVD_TEACHER, torch.float32)
    loss = kdsvd_loss(s, t, 1)
    assert_loss_and_grads(loss, s, G.read("kdsvd", "mdistiller"), "kdsvd")


def _vid(case: str, teacher_shapes):
    s, t = G.feature_pairs(5, teacher_shapes)
    s = G.leaves(s)
    log_scales = G.leaves(G.vid_log_scales(6, teacher_shapes))
    loss = 0.0
    for i, (a, b, ls) in enumerate(zip(s, t, log_scales, strict=True)):
        reg = make_vid_regressor(a.shape[1], b.shape[1], maps=True).double()
        G.fill(reg, 100 + i)
        a, b = match_spatial(a, b)
        loss = loss + vid_loss(reg(a), ls, b, 1e-5)
    return loss, s, log_scales


@pytest.mark.parametrize("case", CASES)
def test_vid_matches_mdistiller(case):
    """mdistiller keeps its log-scales in a plain list, so its optimizer never updates them (the
    variance stays at init_pred_var); kdlens trains them, as the authors' code and RepDistiller.
    The loss at given log-scales, and its gradient, are the same."""
    want = G.read("vid", "mdistiller")[case]
    loss, s, log_scales = _vid(case, CASES[case])
    assert_loss_and_grads(loss, s, want, f"vid {case}")
    for x, w in zip(log_scales, want["log_scale_grads"], strict=True):
        assert_summary(x.grad, w, "vid log-scale gradient")
    from kdlens.distill.methods.vid import initial_log_scale

    assert close(initial_log_scale(5.0, 1e-5), want["initial_log_scale"])


def test_vid_matches_torchdistill():
    want = G.read("vid", "torchdistill")
    loss, s, log_scales = _vid("same_size", G.TEACHER_MAPS)
    assert_loss_and_grads(loss, s, want, "vid")
    for x, w in zip(log_scales, want["log_scale_grads"], strict=True):
        assert_summary(x.grad, w, "vid log-scale gradient")


@pytest.mark.parametrize("case", CASES)
def test_ofd_matches_mdistiller(case):
    """mdistiller stores margins in float32; kdlens keeps the BN's dtype (float64 here)."""
    want = G.read("ofd", "mdistiller")[case]
    shapes = CASES[case]
    margins = [ofd_margin(w, b) for w, b in G.ofd_bn(12, [x[1] for x in shapes])]
    for got, m in zip(margins, want["margins"], strict=True):
        assert torch.allclose(got, torch.tensor(m, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    connectors = []
    for i, (a, b) in enumerate(zip(G.STUDENT_MAPS, shapes, strict=True)):
        c = make_connector(a[1], b[1]).double()
        G.fill(c, 200 + i)
        connectors.append(c)
    s, t = G.feature_pairs(13, shapes)
    s = G.leaves(s)
    loss = ofd_loss([c(x) for c, x in zip(connectors, s, strict=True)], t, margins)
    assert_loss_and_grads(loss, s, want, f"ofd {case}")


@pytest.mark.parametrize("peer", ["mdistiller", "torchdistill"])
@pytest.mark.parametrize("case", G.CRD_CASES)
def test_crd_matches_peers(peer, case):
    """Two steps: Z set from the first batch, banks updated in place between the steps (after
    the loss is built and before its backward pass, as in training). The peers add 1e-7 to
    p + m/N inside the logarithms and kdlens does not (within the tolerance here, m/N >= 0.05)."""
    f_s, f_t, memory_s, memory_t, index, contrast = G.crd_inputs(case)
    n = G.CRD_CASES[case]["num_examples"]
    temperature, momentum = G.CRD_DIMS["temperature"], G.CRD_DIMS["momentum"]
    embed_s = Embed(G.CRD_DIMS["student"], G.CRD_DIMS["feat"]).double()
    embed_t = Embed(G.CRD_DIMS["teacher"], G.CRD_DIMS["feat"]).double()
    G.fill(embed_s, 300)
    G.fill(embed_t, 301)
    z = None
    for step, want in enumerate(G.read("crd", peer)[case]["steps"]):
        x_s = G.leaves([f_s + step])[0]
        pos = index if step == 0 else index.roll(1)
        c = contrast if step == 0 else contrast.roll(1, dims=0)
        embed_s.zero_grad()
        embed_t.zero_grad()
        v_s, v_t = embed_s(x_s), embed_t(f_t - step)
        if z is None:
            with torch.no_grad():
                z = (
                    log_normaliser(contrast_logits(v_s, memory_t, c, temperature), n),
                    log_normaliser(contrast_logits(v_t, memory_s, c, temperature), n),
                )
        loss = crd_loss(v_s, v_t, memory_s, memory_t, c, temperature, z, n)
        update_memory(memory_s, pos, v_s, momentum)
        update_memory(memory_t, pos, v_t, momentum)
        what = f"crd {peer} {case} step {step}"
        got_z = [math.exp(z[0]), math.exp(z[1])]
        assert close(got_z[0], want["z"][0]) and close(got_z[1], want["z"][1]), (what, got_z)
        assert_loss_and_grads(loss, [x_s], {"loss": want["loss"], "grads": [want["grad"]]}, what)
        assert_summary(embed_s.linear.weight.grad, want["grad_embed_s"], what)
        assert_summary(embed_t.linear.weight.grad, want["grad_embed_t"], what)
        assert_summary(memory_s, want["memory_s"], what)
        assert_summary(memory_t, want["memory_t"], what)


@pytest.mark.parametrize("peer", ["mdistiller", "torchdistill"])
def test_reviewkd_matches_peers(peer):
    s, t = G.review_inputs()
    s = G.leaves(s)
    channels_s = [x[1] for x in G.REVIEW_STUDENT]
    channels_t = [x[1] for x in G.REVIEW_TEACHER]
    mid, n = channels_s[-1], len(channels_s)
    abfs = []
    for i, (cs, ct) in enumerate(zip(channels_s, channels_t, strict=True)):
        abf = ABF(cs, mid, ct, fuse=i < n - 1).double()
        G.fill(abf, 400 + i)
        abfs.append(abf)
    as_map = [x if x.ndim == 4 else x[:, :, None, None] for x in s]
    sizes = [tuple(x.shape[-2:]) for x in as_map]
    fused = review(abfs, as_map, sizes)
    loss = hcl_loss(fused, [x if x.ndim == 4 else x[:, :, None, None] for x in t])
    assert_loss_and_grads(loss, s, G.read("reviewkd", peer), f"reviewkd {peer}")
