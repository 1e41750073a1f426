"""Golden values: torchdistill's LogitStdKDLoss (torchdistill/losses/mid_level.py), T = 2,
alpha 0.1 on CE and beta 9 on the standardised KL (Sun et al.'s CIFAR-100 weights).

    PYTHONPATH=src python -m tests.golden.ls_torchdistill
"""

import sys

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import LogitStdKDLoss  # noqa: E402

s, t, y = logits()
criterion = LogitStdKDLoss("fc", "output", "fc", "output", temperature=2.0, alpha=0.1, beta=9.0)
cases = {"kd": result(criterion({"fc": {"output": s}}, {"fc": {"output": t}}, y), s)}
print(write("ls_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
