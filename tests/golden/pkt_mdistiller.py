"""Golden values: mdistiller's pkt_loss (mdistiller/distillers/PKT.py).

PYTHONPATH=src python -m tests.golden.pkt_mdistiller
"""

import sys

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("mdistiller"))
from mdistiller.distillers.PKT import pkt_loss  # noqa: E402

s, t = features()
cases = {"default": result(pkt_loss(s, t), s)}
print(write("pkt_mdistiller", "mdistiller", peer_checkout("mdistiller"), cases))
