"""Golden values: torchdistill's PKTLoss (torchdistill/losses/mid_level.py).

PYTHONPATH=src python -m tests.golden.pkt_torchdistill
"""

import sys

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("torchdistill"))
from torchdistill.losses.mid_level import PKTLoss  # noqa: E402

s, t = features()
criterion = PKTLoss("fc", "input", "fc", "input")
cases = {"default": result(criterion({"fc": {"input": s}}, {"fc": {"input": t}}), s)}
print(write("pkt_torchdistill", "torchdistill", peer_checkout("torchdistill"), cases))
