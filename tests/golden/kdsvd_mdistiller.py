"""Golden values from mdistiller's KD-SVD: ``kdsvd_loss`` with k = 1, and its gradient.

mdistiller decomposes in float32 whatever the input; the inputs here are float32 too.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/kdsvd_mdistiller.py
"""

import torch
from mdistiller.distillers.KDSVD import kdsvd_loss

from tests.golden.features_common import SVD_STUDENT, SVD_TEACHER, leaves, maps, summary, write


def main() -> None:
    s = leaves(maps(3, SVD_STUDENT, torch.float32))
    t = maps(4, SVD_TEACHER, torch.float32)
    loss = kdsvd_loss(s, t, 1)
    loss.backward()
    print(
        write("kdsvd", "mdistiller", {"loss": loss.item(), "grads": [summary(x.grad) for x in s]})
    )


if __name__ == "__main__":
    main()
