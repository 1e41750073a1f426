"""Golden values from mdistiller's VID: ``vid_loss`` summed over layer pairs, through the VID
regressors (weights from tests/golden/features_common.fill), and its gradient with respect to the
student's features and the log-scales.

    PYTHONPATH=src:.:/work/peers/mdistiller python tests/golden/vid_mdistiller.py
"""

import torch
from mdistiller.distillers.VID import VID, vid_loss
from torch import nn

from tests.golden.features_common import (
    STUDENT_MAPS,
    TEACHER_MAPS,
    TEACHER_MAPS_LARGER,
    feature_pairs,
    fill,
    leaves,
    summary,
    vid_log_scales,
    write,
)

EPS = 1e-5


def main() -> None:
    out = {}
    for case, shapes in (("same_size", TEACHER_MAPS), ("pooled", TEACHER_MAPS_LARGER)):
        vid = VID.__new__(VID)  # only the regressors: no student, teacher or config needed
        nn.Module.__init__(vid)
        vid.init_pred_var, vid.eps = 5.0, EPS
        vid.init_vid_modules([s[1] for s in STUDENT_MAPS], [t[1] for t in shapes])
        vid.double()
        for i, regressor in enumerate(vid.regressors):
            fill(regressor, 100 + i)
        s, t = feature_pairs(5, shapes)
        s = leaves(s)
        log_scales = leaves(vid_log_scales(6, shapes))
        loss = sum(
            vid_loss(r, ls, f_s, f_t, EPS)
            for r, ls, f_s, f_t in zip(vid.regressors, log_scales, s, t, strict=True)
        )
        loss.backward()
        out[case] = {
            "loss": loss.item(),
            "grads": [summary(x.grad) for x in s],
            "log_scale_grads": [summary(x.grad) for x in log_scales],
            "initial_log_scale": float(torch.as_tensor(vid.log_scales[0][0])),
        }
    print(write("vid", "mdistiller", out))


if __name__ == "__main__":
    main()
