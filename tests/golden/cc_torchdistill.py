"""Golden values: torchdistill's CCKDLoss (torchdistill/losses/mid_level.py), batchmean, on the
embeddings (after the linear maps, which kdlens and torchdistill both learn).

    PYTHONPATH=src python -m tests.golden.cc_torchdistill
"""

import sys

from tests.golden.common import D_S, features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import CCKDLoss  # noqa: E402

cases = {}
for kernel in ({"type": "gaussian", "gamma": 0.4, "max_p": 2}, {"type": "bilinear"}):
    s, t = features(student_shape=(D_S,), teacher_shape=(D_S,))
    criterion = CCKDLoss("s", "t", kernel_config=kernel, reduction="batchmean")
    loss = criterion({"s": {"output": s}}, {"t": {"output": t}})
    cases[kernel["type"]] = {"kernel": kernel, **result(loss, s)}
print(write("cc_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
