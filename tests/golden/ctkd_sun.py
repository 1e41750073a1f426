"""Golden values: CTKD with logit standardisation, from Sun et al.'s copy of CTKD
(sunshangquan/logit-standardization-KD, CTKD/distiller_zoo/KD.py, DistillKL_logit_stand).

Their train_student.py picks that loss when --logit_stand is *not* given (the condition is
inverted); kdlens applies it when distill.options.logit_standardization is true.

    PYTHONPATH=src python -m tests.golden.ctkd_sun
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from tests.golden.common import logits, peer_checkout, result, write

# CPU run: the peer moves the temperature with .cuda(); make that a no-op here, in this script only.
torch.Tensor.cuda = lambda self, *args, **kwargs: self

sys.path.insert(0, str(Path(peer_checkout("sun")) / "CTKD"))
from distiller_zoo.KD import DistillKL_logit_stand  # noqa: E402
from models.temp_global import Global_T  # noqa: E402

s, t, y = logits()
mlp = Global_T().double()
temp = 1.0 + 20.0 * torch.sigmoid(mlp(t, s, -0.5))
loss = 0.1 * F.cross_entropy(s, y) + 9.0 * DistillKL_logit_stand()(s, t, temp).squeeze()
cases = {"theta1_strength0.5": {"theta": 1.0, "strength": 0.5, **result(loss, s, mlp.global_T)}}
print(write("ctkd_sun", "sun", peer_checkout("sun"), cases))
