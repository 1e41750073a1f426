"""Golden values: mdistiller's dkd_loss (mdistiller/distillers/DKD.py), alpha 1, beta 8.

The CE and the warm-up factor are outside the compared term (kdlens: DKDDistiller.forward).

    PYTHONPATH=src python -m tests.golden.dkd_mdistiller
"""

import sys

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("mdistiller"))
from mdistiller.distillers.DKD import dkd_loss  # noqa: E402

cases = {}
for temperature in (4.0, 1.0):
    s, t, y = logits()
    loss = dkd_loss(s, t, y, 1.0, 8.0, temperature)
    cases[f"T{temperature:g}"] = {"temperature": temperature, **result(loss, s)}
print(write("dkd_mdistiller", "mdistiller", peer_checkout("mdistiller"), cases))
