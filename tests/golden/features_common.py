"""Inputs and summaries shared by the feature methods' golden scripts and tests/test_golden_features.py.

A golden script (run with a peer on PYTHONPATH) and the test build the *same* tensors from these
functions, so the stored JSON holds only the peer's outputs. Nothing here imports a peer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
PEER_COMMITS = {
    "mdistiller": "a08d46f10d6102bd6e3f258ca5ac880b020ea259",
    # torchdistill's snapshot has no v1.1.5 tag: its HEAD (version string "1.1.5-dev") is used.
    "torchdistill": "3e4373c45214c5c56eebac481d5bfe8b8735aa05",
}
BATCH = 4


def maps(seed: int, shapes: list[tuple[int, ...]], dtype=torch.float64) -> list[torch.Tensor]:
    """Standard-normal tensors of ``shapes``, from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype) for s in shapes]


def leaves(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Fresh copies that require gradients (the student's features)."""
    return [t.detach().clone().requires_grad_(True) for t in tensors]


@torch.no_grad()
def fill(module: nn.Module, seed: int, scale: float = 0.5) -> None:
    """Every parameter, in registration order, from one seeded generator; BN weights near 1."""
    g = torch.Generator().manual_seed(seed)
    for name, p in module.named_parameters():
        values = torch.randn(p.shape, generator=g, dtype=torch.float64) * scale
        if name.endswith("weight") and p.ndim == 1:  # a norm layer's scale
            values = 1.0 + values * 0.2
        p.copy_(values.to(p.dtype))


def summary(t: torch.Tensor) -> dict:
    """A short, order-sensitive fingerprint of a tensor: norm, sum, weighted sum, a few entries."""
    flat = t.detach().double().flatten()
    ramp = torch.linspace(-1.0, 1.0, len(flat), dtype=torch.float64)
    return {
        "shape": list(t.shape),
        "norm": float(flat.norm()),
        "sum": float(flat.sum()),
        "ramp": float((flat * ramp).sum()),
        "first": [float(v) for v in flat[:6]],
    }


def write(name: str, peer: str, values: dict) -> Path:
    path = HERE / f"{name}_{peer}.json"
    record = {"peer": peer, "peer_commit": PEER_COMMITS[peer], **values}
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def read(name: str, peer: str) -> dict:
    return json.loads((HERE / f"{name}_{peer}.json").read_text())


# -- inputs per method ---------------------------------------------------------------------------

# Paired maps of one size per pair; channel counts differ between student and teacher.
STUDENT_MAPS = [(BATCH, 6, 8, 8), (BATCH, 10, 4, 4), (BATCH, 12, 2, 2)]
TEACHER_MAPS = [(BATCH, 8, 8, 8), (BATCH, 12, 4, 4), (BATCH, 16, 2, 2)]
# NST and AT also pool a larger map to the smaller one's size.
TEACHER_MAPS_LARGER = [(BATCH, 8, 16, 16), (BATCH, 12, 4, 4), (BATCH, 16, 2, 2)]
# KD-SVD: widths agree, heights and channels need not.
SVD_STUDENT = [(BATCH, 3, 8, 8), (BATCH, 4, 6, 6), (BATCH, 5, 4, 4)]
SVD_TEACHER = [(BATCH, 5, 8, 8), (BATCH, 6, 6, 6), (BATCH, 7, 4, 4)]


def feature_pairs(seed: int, teacher_shapes=TEACHER_MAPS):
    s = maps(seed, STUDENT_MAPS)
    t = maps(seed + 1, teacher_shapes)
    return s, t


def ofd_bn(seed: int, channels: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """BN (weight, bias) per teacher layer; some channels with a bias far above zero (almost no
    negative responses: the -3|gamma| branch), some with a negative weight."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for c in channels:
        w = torch.randn(c, generator=g, dtype=torch.float64)
        b = torch.randn(c, generator=g, dtype=torch.float64)
        b[0] = 4.0 * w[0].abs()  # P(x < 0) = Phi(-4) < 0.001
        out.append((w, b))
    return out


# CRD: a small bank; one case where the whole-bank product is cheaper, one where gathering is.
CRD_CASES = {
    "small_bank": {"num_examples": 40, "k": 16, "seed": 7},
    "large_bank": {"num_examples": 400, "k": 16, "seed": 8},  # 400 > 4 * 4 * 17: gathered rows
}
CRD_DIMS = {"student": 6, "teacher": 10, "feat": 8, "temperature": 0.07, "momentum": 0.5}


def crd_inputs(case: str):
    """Student/teacher features, pre-L2 bank contents, positive and contrast indices."""
    c = CRD_CASES[case]
    n, k, seed = c["num_examples"], c["k"], c["seed"]
    g = torch.Generator().manual_seed(seed)
    f_s = torch.randn(BATCH, CRD_DIMS["student"], generator=g, dtype=torch.float64)
    f_t = torch.randn(BATCH, CRD_DIMS["teacher"], generator=g, dtype=torch.float64)
    stdv = 1.0 / (CRD_DIMS["feat"] / 3) ** 0.5
    memory_s = torch.rand(n, CRD_DIMS["feat"], generator=g, dtype=torch.float64) * 2 * stdv - stdv
    memory_t = torch.rand(n, CRD_DIMS["feat"], generator=g, dtype=torch.float64) * 2 * stdv - stdv
    index = torch.randperm(n, generator=g)[:BATCH]
    negatives = torch.randint(n, (BATCH, k), generator=g)
    contrast = torch.cat([index[:, None], negatives], dim=1)
    return f_s, f_t, memory_s, memory_t, index, contrast


# ReviewKD: student levels (3 stages + embedding) and the teacher's pre-ReLU maps + embedding.
REVIEW_STUDENT = [(BATCH, 4, 8, 8), (BATCH, 6, 4, 4), (BATCH, 8, 2, 2), (BATCH, 8)]
REVIEW_TEACHER = [(BATCH, 5, 8, 8), (BATCH, 7, 4, 4), (BATCH, 9, 2, 2), (BATCH, 9)]


def review_inputs(seed: int = 11):
    return maps(seed, REVIEW_STUDENT), maps(seed + 1, REVIEW_TEACHER)


# VID: random log-scales (the learned per-channel variances), seeded regressors.
def vid_log_scales(seed: int, teacher_shapes=TEACHER_MAPS) -> list[torch.Tensor]:
    return maps(seed, [(s[1],) for s in teacher_shapes])


def fitnets_weights(seed: int, c_student: int, c_teacher: int) -> dict[str, torch.Tensor]:
    """A 1x1 regressor conv (weight and bias) and its BN's scale and shift."""
    g = torch.Generator().manual_seed(seed)
    return {
        "conv_weight": torch.randn(c_teacher, c_student, 1, 1, generator=g, dtype=torch.float64),
        "conv_bias": torch.randn(c_teacher, generator=g, dtype=torch.float64),
        "bn_weight": 1.0 + 0.2 * torch.randn(c_teacher, generator=g, dtype=torch.float64),
        "bn_bias": torch.randn(c_teacher, generator=g, dtype=torch.float64),
    }
