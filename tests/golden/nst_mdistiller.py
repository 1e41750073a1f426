"""Golden values from mdistiller's NST: ``nst_loss`` summed over layer pairs, and its gradient.

PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/nst_mdistiller.py
"""

from mdistiller.distillers.NST import nst_loss

from tests.golden.features_common import (
    TEACHER_MAPS,
    TEACHER_MAPS_LARGER,
    feature_pairs,
    leaves,
    summary,
    write,
)


def main() -> None:
    out = {}
    for case, shapes in (("same_size", TEACHER_MAPS), ("pooled", TEACHER_MAPS_LARGER)):
        s, t = feature_pairs(1, shapes)
        s = leaves(s)
        loss = nst_loss(s, t)
        loss.backward()
        out[case] = {"loss": loss.item(), "grads": [summary(x.grad) for x in s]}
    print(write("nst", "mdistiller", out))


if __name__ == "__main__":
    main()
