"""Golden values from mdistiller's CRD: two steps of ``CRD.crd_loss`` (embeddings, contrast memory,
NCE losses) with given positive and contrast indices, and their gradients with respect to the
student's features and both embedding heads, the normalisers Z and the updated bank rows.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/crd_mdistiller.py
"""

import torch
from mdistiller.distillers.CRD import CRD, AliasMethod
from torch import nn

from tests.golden.features_common import (
    CRD_CASES,
    CRD_DIMS,
    crd_inputs,
    fill,
    leaves,
    summary,
    write,
)

# Stub: ContrastMemory moves its sampler to CUDA unconditionally. The sampler only draws
# contrast indices when none are given; these scripts always give them, so it is never used.
AliasMethod.cuda = lambda self: None


def run(case: str) -> dict:
    f_s, f_t, memory_s, memory_t, index, contrast = crd_inputs(case)
    n, k = CRD_CASES[case]["num_examples"], CRD_CASES[case]["k"]
    d = CRD.__new__(CRD)  # only the CRD modules: no student, teacher or config
    nn.Module.__init__(d)
    d.init_crd_modules(
        CRD_DIMS["student"], CRD_DIMS["teacher"], CRD_DIMS["feat"], n, k,
        CRD_DIMS["momentum"], CRD_DIMS["temperature"],
    )  # fmt: skip
    d.double()
    fill(d.embed_s, 300)
    fill(d.embed_t, 301)
    with torch.no_grad():
        d.contrast.memory_v1.copy_(memory_s)  # the student's bank
        d.contrast.memory_v2.copy_(memory_t)  # the teacher's bank
    steps = []
    for step in range(2):
        # Step 2: other features, and the contrast rows shifted so updated rows are drawn.
        x_s = leaves([f_s + step])[0]
        x_t = f_t - step
        c = contrast if step == 0 else contrast.roll(1, dims=0)
        d.zero_grad()
        loss = d.crd_loss(x_s, x_t, index if step == 0 else index.roll(1), c)
        loss.backward()
        steps.append(
            {
                "loss": loss.item(),
                "grad": summary(x_s.grad),
                "grad_embed_s": summary(d.embed_s.linear.weight.grad),
                "grad_embed_t": summary(d.embed_t.linear.weight.grad),
                "z": [d.contrast.params[2].item(), d.contrast.params[3].item()],
                "memory_s": summary(d.contrast.memory_v1),
                "memory_t": summary(d.contrast.memory_v2),
            }
        )
    return {"steps": steps}


def main() -> None:
    print(write("crd", "mdistiller", {case: run(case) for case in CRD_CASES}))


if __name__ == "__main__":
    main()
