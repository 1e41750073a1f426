"""Golden values: torchdistill's KDLoss (torchdistill/losses/mid_level.py), alpha 0.1.

PYTHONPATH=src python -m tests.golden.kd_torchdistill
"""

import sys

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import KDLoss  # noqa: E402

cases = {}
for temperature in (4.0, 1.0):
    s, t, y = logits()
    criterion = KDLoss("fc", "output", "fc", "output", temperature=temperature, alpha=0.1)
    loss = criterion({"fc": {"output": s}}, {"fc": {"output": t}}, y)
    cases[f"T{temperature:g}"] = {"temperature": temperature, **result(loss, s)}
print(write("kd_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
