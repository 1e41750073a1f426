"""Golden values from mdistiller's ReviewKD: ``forward_train``'s review loss (ABF fusion from the
deepest level up, then ``hcl_loss``) after the warm-up, with the ABF weights from
features_common.fill, and its gradient with respect to the student's levels.

The student and teacher are stand-ins that return given features in mdistiller's format.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/reviewkd_mdistiller.py
"""

from types import SimpleNamespace

import torch
from mdistiller.distillers.ReviewKD import ReviewKD
from torch import nn

from tests.golden.features_common import (
    BATCH,
    REVIEW_STUDENT,
    REVIEW_TEACHER,
    fill,
    leaves,
    review_inputs,
    summary,
    write,
)


class Features(nn.Module):
    """A stand-in model: returns fixed logits and a feature dict, whatever the image."""

    def __init__(self, feats: dict):
        super().__init__()
        self.feats = feats
        self.logits = torch.zeros(BATCH, 10, dtype=torch.float64)

    def forward(self, image):
        return self.logits, self.feats


def main() -> None:
    s, t = review_inputs()
    s = leaves(s)
    unused = torch.zeros(BATCH, 3, 8, 8, dtype=torch.float64)  # the stem: zip drops it
    student = Features({"feats": [unused, *s[:3]], "pooled_feat": s[3]})
    teacher = Features({"preact_feats": [unused, *t[:3]], "pooled_feat": t[3]})
    sizes = [x[2] for x in REVIEW_STUDENT[:3]][::-1]  # deep to shallow, as mdistiller lists them
    cfg = SimpleNamespace(
        REVIEWKD=SimpleNamespace(
            SHAPES=[1, *sizes],
            OUT_SHAPES=[1, *sizes],
            IN_CHANNELS=[x[1] for x in REVIEW_STUDENT],
            OUT_CHANNELS=[x[1] for x in REVIEW_TEACHER],
            CE_WEIGHT=1.0,
            REVIEWKD_WEIGHT=1.0,
            WARMUP_EPOCHS=20,
            STU_PREACT=False,
            MAX_MID_CHANNEL=512,
        )
    )
    d = ReviewKD(student, teacher, cfg).double()
    for i, abf in enumerate(list(d.abfs)[::-1]):  # shallow to deep
        fill(abf, 400 + i)
    target = torch.zeros(BATCH, dtype=torch.long)
    _, losses = d.forward_train(image=None, target=target, epoch=20)
    loss = losses["loss_kd"]
    loss.backward()
    print(
        write(
            "reviewkd", "mdistiller", {"loss": loss.item(), "grads": [summary(x.grad) for x in s]}
        )
    )


if __name__ == "__main__":
    main()
