"""Golden values: torchdistill's DISTLoss (torchdistill/losses/mid_level.py), beta = gamma = 1.

torchdistill uses torch's cosine_similarity, whose eps clamps each norm (max(|a|, eps)); the
authors' code (and kdlens) add eps to the norms' product. Away from zero-norm rows the two agree
to ~1e-8 relative.

    PYTHONPATH=src python -m tests.golden.dist_torchdistill
"""

import sys

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import DISTLoss  # noqa: E402

cases = {}
for tau in (1.0, 4.0):
    s, t, _ = logits()
    criterion = DISTLoss("fc", "output", "fc", "output", beta=1.0, gamma=1.0, tau=tau)
    loss = criterion({"fc": {"output": s}}, {"fc": {"output": t}})
    cases[f"T{tau:g}"] = {"temperature": tau, **result(loss, s)}
print(write("dist_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
