"""Golden values: the DIST authors' loss (hunto/image_classification_sota,
lib/models/losses/dist_kd.py), beta = gamma = 1.

    PYTHONPATH=src python -m tests.golden.dist_huang
"""

import sys

from tests.golden.common import logits, peer_checkout, result, write

sys.path.insert(0, peer_checkout("huang"))
from lib.models.losses.dist_kd import DIST  # noqa: E402

cases = {}
for tau in (1.0, 4.0):
    s, t, _ = logits()
    loss = DIST(beta=1.0, gamma=1.0, tau=tau)(s, t)
    cases[f"T{tau:g}"] = {"temperature": tau, **result(loss, s)}
print(write("dist_huang", "huang", peer_checkout("huang"), cases))
