"""Golden values from torchdistill's ATLoss (mode 'code', one pair per layer, weight 1).

PYTHONPATH=src:.:/work/peers/torchdistill python tests/golden/at_torchdistill.py
"""

from torchdistill.losses.mid_level import ATLoss

from tests.golden.features_common import feature_pairs, leaves, summary, write


def main() -> None:
    s, t = feature_pairs(2)
    s = leaves(s)
    pairs = {
        f"pair{i}": {
            "student": {"io": "output", "path": f"s{i}"},
            "teacher": {"io": "output", "path": f"t{i}"},
            "weight": 1,
        }
        for i in range(len(s))
    }
    student_io = {f"s{i}": {"output": x} for i, x in enumerate(s)}
    teacher_io = {f"t{i}": {"output": x} for i, x in enumerate(t)}
    loss = ATLoss(pairs, mode="code")(student_io, teacher_io)
    loss.backward()
    print(write("at", "torchdistill", {"loss": loss.item(), "grads": [summary(x.grad) for x in s]}))


if __name__ == "__main__":
    main()
