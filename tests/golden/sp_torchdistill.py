"""Golden values: torchdistill's SPKDLoss (torchdistill/losses/mid_level.py), batchmean.

Known difference: SPKDLoss.matmul_and_normalize calls ``normalize(G, 1)``; the second positional
argument of torch's normalize is p, not dim, so torchdistill normalises each row of G to unit
*L1* norm. The paper (eq. 2), its author-verified code (RepDistiller) and mdistiller use L2. The
script maps the call to what was meant (L2 over dim 1) before computing the golden values; the
value as released is kept in the note.

    PYTHONPATH=src python -m tests.golden.sp_torchdistill
"""

import sys

import torch.nn.functional as F

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
import torchdistill.losses.mid_level as mid  # noqa: E402

s, t = features(student_shape=(4, 2, 2), teacher_shape=(6, 4, 4))
criterion = mid.SPKDLoss("f", "f", reduction="batchmean")
as_released = float(criterion({"f": {"output": s}}, {"f": {"output": t}}).detach())
mid.normalize = lambda x, dim: F.normalize(x, p=2.0, dim=dim)  # the L2 row normalisation meant
cases = {"maps": result(criterion({"f": {"output": s}}, {"f": {"output": t}}), s)}
note = f"normalize(G, 1) mapped to L2 rows; as released (L1 rows) the loss is {as_released!r}"
print(write("sp_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases, note))
