"""Golden values: CTKD's global temperature and KD loss (zhengli97/CTKD: models/temp_global.py,
distiller_zoo/KD.py, the loop in helper/loops.py): 0.1 CE + 0.9 DistillKL at
T = 1 + 20 sigmoid(GRL(theta, lambda)), with lambda = -strength (CTKD's cos_value).

    PYTHONPATH=src python -m tests.golden.ctkd_li
"""

import sys

import torch
import torch.nn.functional as F

from tests.golden.common import logits, peer_checkout, result, write

# CPU run: the peer moves the temperature with .cuda(); make that a no-op here, in this script only.
torch.Tensor.cuda = lambda self, *args, **kwargs: self

sys.path.insert(0, peer_checkout("ctkd"))
from distiller_zoo.KD import DistillKL  # noqa: E402
from models.temp_global import Global_T  # noqa: E402

cases = {}
for theta0, strength in ((1.0, 0.5), (-0.3, 1.0)):
    s, t, y = logits()
    mlp = Global_T().double()
    with torch.no_grad():
        mlp.global_T.fill_(theta0)
    temp = 1.0 + 20.0 * torch.sigmoid(mlp(t, s, -strength))
    loss = 0.1 * F.cross_entropy(s, y) + 0.9 * DistillKL()(s, t, temp).squeeze()
    case = result(loss, s, mlp.global_T)
    cases[f"theta{theta0:g}_strength{strength:g}"] = {"theta": theta0, "strength": strength, **case}
print(write("ctkd_li", "ctkd", peer_checkout("ctkd"), cases))
