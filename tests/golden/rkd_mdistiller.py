"""Golden values: mdistiller's rkd_loss (mdistiller/distillers/RKD.py), distance 25, angle 50.

PYTHONPATH=src python -m tests.golden.rkd_mdistiller
"""

import sys

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("mdistiller"))
from mdistiller.distillers.RKD import rkd_loss  # noqa: E402

s, t = features()
cases = {"default": result(rkd_loss(s, t, False, 1e-12, 25.0, 50.0), s)}
print(write("rkd_mdistiller", "mdistiller", peer_checkout("mdistiller"), cases))
