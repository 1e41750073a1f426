"""Golden values from mdistiller's OFD: the margins it derives from the teacher's BN (weight,
bias), and ``ofd_loss`` through its connectors (weights from features_common.fill), with the
gradient with respect to the student's pre-ReLU maps.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/ofd_mdistiller.py
"""

import torch
from mdistiller.distillers.OFD import OFD
from torch import nn

from tests.golden.features_common import (
    STUDENT_MAPS,
    TEACHER_MAPS,
    TEACHER_MAPS_LARGER,
    feature_pairs,
    fill,
    leaves,
    ofd_bn,
    summary,
    write,
)


def main() -> None:
    out = {}
    for case, shapes in (("same_size", TEACHER_MAPS), ("pooled", TEACHER_MAPS_LARGER)):
        bns = []
        for w, b in ofd_bn(12, [t[1] for t in shapes]):
            bn = nn.BatchNorm2d(len(w))
            with torch.no_grad():
                bn.weight.copy_(w)
                bn.bias.copy_(b)
            bns.append(bn)
        ofd = OFD.__new__(OFD)  # only connectors and margins: no student, teacher or config
        nn.Module.__init__(ofd)
        ofd.init_ofd_modules([t[1] for t in shapes], [s[1] for s in STUDENT_MAPS], bns)
        ofd.double()
        for i, c in enumerate(ofd.connectors.connectors):
            fill(c, 200 + i)
        s, t = feature_pairs(13, shapes)
        s = leaves(s)
        loss = ofd.ofd_loss(s, t)
        loss.backward()
        out[case] = {
            "loss": loss.item(),
            "grads": [summary(x.grad) for x in s],
            "margins": [m.flatten().tolist() for m in ofd.margins],
        }
    print(write("ofd", "mdistiller", out))


if __name__ == "__main__":
    main()
