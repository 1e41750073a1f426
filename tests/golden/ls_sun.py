"""Golden values: logit standardisation in the authors' code (sunshangquan/logit-standardization-KD,
mdistiller/distillers/KD.py and DKD.py with logit_stand=True), at their CIFAR-100 setting
(--base-temp 2 --kd-weight 9): KD 0.1 CE + 9 kd_loss; DKD alpha 1 x 9, beta 8 x 9 (CE outside).

    PYTHONPATH=src python -m tests.golden.ls_sun
"""

import sys

import torch.nn.functional as F

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("sun"))
from mdistiller.distillers.DKD import dkd_loss  # noqa: E402
from mdistiller.distillers.KD import kd_loss  # noqa: E402

s, t, y = logits()
kd = 0.1 * F.cross_entropy(s, y) + 9.0 * kd_loss(s, t, 2.0, True)
cases = {"kd": result(kd, s)}
s, t, y = logits()
cases["dkd"] = result(dkd_loss(s, t, y, 9.0, 72.0, 2.0, True), s)
print(write("ls_sun", "sun", peer_checkout("sun"), cases))
