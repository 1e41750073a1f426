"""Golden values: torchdistill's RKDLoss (torchdistill/losses/mid_level.py), factors 25 and 50.

PYTHONPATH=src python -m tests.golden.rkd_torchdistill
"""

import sys

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import RKDLoss  # noqa: E402

s, t = features(student_shape=(3, 2, 2), teacher_shape=(5, 2, 2))  # flattened by the loss
criterion = RKDLoss("f", "f", dist_factor=25.0, angle_factor=50.0, reduction="mean")
loss = criterion({"f": {"output": s}}, {"f": {"output": t}})
cases = {"maps": result(loss, s)}
print(write("rkd_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
