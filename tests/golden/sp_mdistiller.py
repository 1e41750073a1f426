"""Golden values: mdistiller's sp_loss (mdistiller/distillers/SP.py) on feature maps.

PYTHONPATH=src python -m tests.golden.sp_mdistiller
"""

import sys

from tests.golden.common import features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("mdistiller"))
from mdistiller.distillers.SP import sp_loss  # noqa: E402

s, t = features(student_shape=(4, 2, 2), teacher_shape=(6, 4, 4))
cases = {"maps": result(sp_loss([s], [t]), s)}
print(write("sp_mdistiller", "mdistiller", peer_checkout("mdistiller"), cases))
