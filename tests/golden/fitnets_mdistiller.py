"""Golden values from mdistiller's FitNet: MSE between its ConvReg(student hint) and the teacher's
hint (maps of one size: a 1x1 conv + BN + ReLU), and the gradient with respect to the student's map.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/fitnets_mdistiller.py
"""

import torch
import torch.nn.functional as F
from mdistiller.distillers._common import ConvReg

from tests.golden.features_common import (
    STUDENT_MAPS,
    TEACHER_MAPS,
    feature_pairs,
    fitnets_weights,
    leaves,
    summary,
    write,
)


def main() -> None:
    s, t = feature_pairs(9)
    s, t = leaves(s[:1])[0], t[0]
    reg = ConvReg(STUDENT_MAPS[0], TEACHER_MAPS[0]).double()
    w = fitnets_weights(10, STUDENT_MAPS[0][1], TEACHER_MAPS[0][1])
    with torch.no_grad():
        reg.conv.weight.copy_(w["conv_weight"])
        reg.conv.bias.copy_(w["conv_bias"])
        reg.bn.weight.copy_(w["bn_weight"])
        reg.bn.bias.copy_(w["bn_bias"])
    loss = F.mse_loss(reg(s), t)
    loss.backward()
    print(write("fitnets", "mdistiller", {"loss": loss.item(), "grads": [summary(s.grad)]}))


if __name__ == "__main__":
    main()
