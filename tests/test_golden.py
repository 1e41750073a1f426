"""kdlens's losses against values computed by peer implementations (tests/golden/*.json).

Each JSON was written by tests/golden/<name>.py running the peer's own code on the inputs of
tests/golden/common.py; here the same inputs go through kdlens. Loss and gradients (w.r.t. the
student's logits or features, and CTKD's temperature parameter) must agree to 1e-5 relative.
Where conventions differ, the mapping is spelled out next to the case (and in the script).
"""

import pytest
import torch
import torch.nn.functional as F

from kdlens.distill.methods.cc import cc_consecutive_loss, cc_loss
from kdlens.distill.methods.ctkd import ctkd_soft_loss, learned_temperature
from kdlens.distill.methods.dist import dist_loss
from kdlens.distill.methods.dkd import dkd_loss
from kdlens.distill.methods.kd import kd_loss
from kdlens.distill.methods.pkt import pkt_loss
from kdlens.distill.methods.rkd import rkd_angle_loss, rkd_distance_loss
from kdlens.distill.methods.sp import sp_loss
from tests.golden.common import D_S, HERE, features, load, logits

RTOL = 1e-5


def _kd(case):
    s, t, y = logits()
    return kd_loss(s, t, y, case["temperature"], 0.1), (s,)


def _dkd(case):
    s, t, y = logits()
    return dkd_loss(s, t, y, case["temperature"], 1.0, 8.0), (s,)


def _rkd(shapes):
    def build(case):
        s, t = features(**shapes)
        return 25 * rkd_distance_loss(s, t) + 50 * rkd_angle_loss(s, t), (s,)

    return build


def _pkt(case):
    s, t = features()
    return pkt_loss(s, t), (s,)


def _sp(case):
    s, t = features(student_shape=(4, 2, 2), teacher_shape=(6, 4, 4))
    return sp_loss(s, t), (s,)


def _cc(case):
    s, t = features(student_shape=(D_S,), teacher_shape=(D_S,))
    kernel = case["kernel"]
    return cc_loss(s, t, kernel["type"], kernel.get("gamma", 0.4), kernel.get("max_p", 2)), (s,)


def _cc_consecutive(case):
    s, t = features(student_shape=(D_S,), teacher_shape=(D_S,))
    return cc_consecutive_loss(s, t), (s,)


def _dist(case):
    s, t, _ = logits()
    return dist_loss(s, t, case["temperature"], beta=1.0, gamma=1.0), (s,)


def _ctkd(kd_weight, standardize):
    def build(case):
        s, t, y = logits()
        theta = torch.tensor([case["theta"]], dtype=torch.float64, requires_grad=True)
        temperature = learned_temperature(theta, case["strength"])
        soft = ctkd_soft_loss(s, t, temperature, standardize)
        return 0.1 * F.cross_entropy(s, y) + kd_weight * soft, (s, theta)

    return build


def _ls_kd(case):
    # Peers: 0.1 CE + 9 T^2 KL(standardised). kdlens weighs alpha : 1 - alpha, so the same loss is
    # 9.1 x kd_loss with alpha = 0.1 / 9.1 (docs/distillation.md, "Logit standardisation").
    s, t, y = logits()
    return 9.1 * kd_loss(s, t, y, 2.0, 0.1 / 9.1, standardize=True), (s,)


def _ls_dkd(case):
    s, t, y = logits()
    return dkd_loss(s, t, y, 2.0, 9.0, 72.0, standardize=True), (s,)


KDLENS = {
    "kd_mdistiller": _kd,
    "kd_torchdistill": _kd,
    "dkd_mdistiller": _dkd,
    "rkd_mdistiller": _rkd({}),
    "rkd_torchdistill": _rkd({"student_shape": (3, 2, 2), "teacher_shape": (5, 2, 2)}),
    "pkt_mdistiller": _pkt,
    "pkt_torchdistill": _pkt,
    "sp_mdistiller": _sp,
    "sp_torchdistill": _sp,
    "cc_torchdistill": _cc,
    "cc_repdistiller": _cc_consecutive,
    "dist_torchdistill": _dist,
    "dist_huang": _dist,
    "ctkd_li": _ctkd(0.9, standardize=False),
    "ctkd_sun": _ctkd(9.0, standardize=True),
    "ls_sun": lambda case: (_ls_dkd if case is CASES["ls_sun"]["dkd"] else _ls_kd)(case),
    "ls_torchdistill": _ls_kd,
}
CASES = {name: load(name)["cases"] for name in KDLENS}


def test_every_golden_script_has_its_values():
    # The feature methods' golden files sit in the same folder, compared by their own test.
    assert all(
        (HERE / f"{name}.json").is_file() and (HERE / f"{name}.py").is_file() for name in KDLENS
    )


@pytest.mark.parametrize(
    ("name", "case"), [(n, c) for n, cases in CASES.items() for c in cases], ids=str
)
def test_kdlens_matches_the_peer(name, case):
    golden = CASES[name][case]
    loss, leaves = KDLENS[name](golden)
    grads = torch.autograd.grad(loss, leaves)
    assert float(loss.detach()) == pytest.approx(golden["loss"], rel=RTOL)
    for grad, expected in zip(grads, golden["grads"], strict=True):
        expected = torch.tensor(expected, dtype=torch.float64)
        err = torch.linalg.norm(grad.flatten() - expected) / torch.linalg.norm(expected)
        assert float(err) <= RTOL, f"{name}/{case}: gradient relative error {float(err):.2e}"
