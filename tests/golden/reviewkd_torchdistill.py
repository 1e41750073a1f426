"""Golden values from torchdistill's knowledge review: Student4KnowledgeReview's attention-based
fusion (weights from features_common.fill) and one HierarchicalContextLoss per level, summed, with
the gradient with respect to the student's levels (the embedding as a 1x1 map).

    PYTHONPATH=src:.:/work/peers/torchdistill python tests/golden/reviewkd_torchdistill.py
"""

from torch import nn
from torchdistill.losses.mid_level import HierarchicalContextLoss
from torchdistill.models.wrapper import Student4KnowledgeReview

from tests.golden.features_common import (
    REVIEW_STUDENT,
    REVIEW_TEACHER,
    fill,
    leaves,
    review_inputs,
    summary,
    write,
)


def main() -> None:
    s, t = review_inputs()
    s = leaves(s)
    s_maps = [*s[:3], s[3][:, :, None, None]]
    t_maps = [*t[:3], t[3][:, :, None, None]]
    mid = REVIEW_STUDENT[-1][1]
    abfs = [
        {
            "io": "output",
            "path": f"s{i}",
            "kwargs": {"in_channels": cs[1], "mid_channels": mid, "out_channels": ct[1]},
        }
        for i, (cs, ct) in enumerate(zip(REVIEW_STUDENT, REVIEW_TEACHER, strict=True))
    ]
    sizes = [1, *[x[2] for x in REVIEW_STUDENT[:3]][::-1]]
    wrapper = Student4KnowledgeReview(nn.Identity(), abfs, "cpu", None, False, sizes=sizes)
    wrapper.double()
    levels = list(wrapper.abf_modules)[::-1]  # shallow to deep
    outputs = {}
    for i, abf in enumerate(levels):
        fill(abf, 400 + i)
        abf.register_forward_hook(lambda m, inp, out, i=i: outputs.__setitem__(f"abf{i}", out))
    wrapper.secondary_forward({f"s{i}": {"output": x} for i, x in enumerate(s_maps)})
    student_io = {k: {"output": v} for k, v in outputs.items()}
    teacher_io = {f"t{i}": {"output": x} for i, x in enumerate(t_maps)}
    loss = sum(
        HierarchicalContextLoss(f"abf{i}", "output", f"t{i}", "output")(student_io, teacher_io)
        for i in range(len(s_maps))
    )
    loss.backward()
    print(
        write(
            "reviewkd", "torchdistill", {"loss": loss.item(), "grads": [summary(x.grad) for x in s]}
        )
    )


if __name__ == "__main__":
    main()
