"""Golden values from torchdistill's CRDLoss (with Normalizer4CRD embedding heads): two steps with
given positive and contrast indices, gradients with respect to the student's features and both
heads, and the updated banks.

    PYTHONPATH=src:.:/work/peers/torchdistill python tests/golden/crd_torchdistill.py
"""

import torch
from torch import nn
from torchdistill.losses.mid_level import CRDLoss
from torchdistill.models.wrapper import Normalizer4CRD

from tests.golden.features_common import (
    CRD_CASES,
    CRD_DIMS,
    crd_inputs,
    fill,
    leaves,
    summary,
    write,
)


def run(case: str) -> dict:
    f_s, f_t, memory_s, memory_t, index, contrast = crd_inputs(case)
    n, k = CRD_CASES[case]["num_examples"], CRD_CASES[case]["k"]
    embed_s = Normalizer4CRD(nn.Linear(CRD_DIMS["student"], CRD_DIMS["feat"])).double()
    embed_t = Normalizer4CRD(nn.Linear(CRD_DIMS["teacher"], CRD_DIMS["feat"])).double()
    fill(embed_s, 300)
    fill(embed_t, 301)
    loss_fn = CRDLoss(
        "sn", "se", "tn", CRD_DIMS["feat"], n, k, n,
        CRD_DIMS["temperature"], CRD_DIMS["momentum"], eps=1e-7,
    ).double()  # fmt: skip
    with torch.no_grad():
        loss_fn.memory_v1.copy_(memory_s)
        loss_fn.memory_v2.copy_(memory_t)
    steps = []
    for step in range(2):
        x_s = leaves([f_s + step])[0]
        x_t = f_t - step
        pos = index if step == 0 else index.roll(1)
        c = contrast if step == 0 else contrast.roll(1, dims=0)
        embed_s.zero_grad()
        embed_t.zero_grad()
        student_io = {
            "sn": {"output": embed_s(x_s)},
            "se": {"input": {"pos_idx": pos, "contrast_idx": c}},
        }
        loss = loss_fn(student_io, {"tn": {"output": embed_t(x_t)}})
        loss.backward()
        steps.append(
            {
                "loss": loss.item(),
                "grad": summary(x_s.grad),
                "grad_embed_s": summary(embed_s.linear.weight.grad),
                "grad_embed_t": summary(embed_t.linear.weight.grad),
                "z": [loss_fn.params[2].item(), loss_fn.params[3].item()],
                "memory_s": summary(loss_fn.memory_v1),
                "memory_t": summary(loss_fn.memory_v2),
            }
        )
    return {"steps": steps}


def main() -> None:
    print(write("crd", "torchdistill", {case: run(case) for case in CRD_CASES}))


if __name__ == "__main__":
    main()
