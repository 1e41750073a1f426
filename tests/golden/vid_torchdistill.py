"""Golden values from torchdistill's VIDLoss with its Regressor4VID (weights from
tests/golden/features_common.fill), and the gradient with respect to the student's features and
the regressors' soft-plus parameters (kdlens's log-scales).

    PYTHONPATH=src:.:/work/peers/torchdistill python tests/golden/vid_torchdistill.py
"""

import torch
from torchdistill.losses.mid_level import VIDLoss
from torchdistill.models.wrapper import Regressor4VID

from tests.golden.features_common import (
    STUDENT_MAPS,
    TEACHER_MAPS,
    feature_pairs,
    fill,
    leaves,
    summary,
    vid_log_scales,
    write,
)

EPS = 1e-5


def main() -> None:
    s, t = feature_pairs(5)
    s = leaves(s)
    regressors = []
    for i, (cs, ct, ls) in enumerate(
        zip(STUDENT_MAPS, TEACHER_MAPS, vid_log_scales(6), strict=True)
    ):
        r = Regressor4VID(cs[1], ct[1], ct[1], EPS, 5.0).double()
        fill(r.regressor, 100 + i)
        with torch.no_grad():
            r.soft_plus_param.copy_(ls)
        regressors.append(r)
    pairs = {
        f"pair{i}": {
            "student": {"io": "output", "path": f"r{i}"},
            "teacher": {"io": "output", "path": f"t{i}"},
            "weight": 1,
        }
        for i in range(len(s))
    }
    student_io = {
        f"r{i}": {"output": r(x)} for i, (r, x) in enumerate(zip(regressors, s, strict=True))
    }
    teacher_io = {f"t{i}": {"output": x} for i, x in enumerate(t)}
    loss = VIDLoss(pairs)(student_io, teacher_io)
    loss.backward()
    print(
        write(
            "vid",
            "torchdistill",
            {
                "loss": loss.item(),
                "grads": [summary(x.grad) for x in s],
                "log_scale_grads": [summary(r.soft_plus_param.grad) for r in regressors],
            },
        )
    )


if __name__ == "__main__":
    main()
