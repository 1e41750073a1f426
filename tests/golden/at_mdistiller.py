"""Golden values from mdistiller's AT: ``at_loss`` (p = 2) summed over layer pairs, and its gradient.

PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/at_mdistiller.py
"""

from mdistiller.distillers.AT import at_loss

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
        s, t = feature_pairs(2, shapes)
        s = leaves(s)
        loss = at_loss(s, t, 2)
        loss.backward()
        out[case] = {"loss": loss.item(), "grads": [summary(x.grad) for x in s]}
    print(write("at", "mdistiller", out))


if __name__ == "__main__":
    main()
