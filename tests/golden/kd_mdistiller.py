"""Golden values: mdistiller's KD (mdistiller/distillers/KD.py), CE weight 0.1 and KD weight 0.9.

PYTHONPATH=src python -m tests.golden.kd_mdistiller
"""

import sys

import torch.nn.functional as F

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("mdistiller"))
from mdistiller.distillers.KD import kd_loss  # noqa: E402

cases = {}
for temperature in (4.0, 1.0):
    s, t, y = logits()
    # mdistiller's KD.forward_train: CE_WEIGHT * CE + KD_WEIGHT * kd_loss (T^2 inside).
    loss = 0.1 * F.cross_entropy(s, y) + 0.9 * kd_loss(s, t, temperature)
    cases[f"T{temperature:g}"] = {"temperature": temperature, **result(loss, s)}
print(write("kd_mdistiller", "mdistiller", peer_checkout("mdistiller"), cases))
