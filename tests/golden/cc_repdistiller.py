"""Golden values: RepDistiller's Correlation (distiller_zoo/CC.py), the CC code the authors gave
RepDistiller, behind the published CIFAR-100 numbers (kdlens: correlation "consecutive").

    PYTHONPATH=src python -m tests.golden.cc_repdistiller
"""

import sys

from tests.golden.common import D_S, features, peer_checkout, result, write

sys.path.insert(0, peer_checkout("repdistiller"))
from distiller_zoo.CC import Correlation  # noqa: E402

s, t = features(student_shape=(D_S,), teacher_shape=(D_S,))
cases = {"consecutive": result(Correlation()(s, t), s)}
print(write("cc_repdistiller", "repdistiller", peer_checkout("repdistiller"), cases))
