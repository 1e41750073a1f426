"""Cost of one training step per distillation method, against plain KD's step on the same student.

One thread, side by side in one process: rounds of ``--steps`` steps per method, methods
interleaved in every round, median per-step time over all rounds. A step is what the training
loop does: the distiller's forward, backward and an Adam step. The setting is the issue-6 mnist5k
benchmark's (benchmarks/configs/mnist5k_methods.yaml): 1x28x28 inputs, teacher ``cnn`` [16, 32]
hidden 64, student ``cnn`` [4, 8] hidden 16 (``--student 16,32,64``: as wide as the teacher, as
the CIFAR pairs resnet32x4 -> resnet8x4 are), batch 128, 3,500 training examples (CRD's bank), 10
classes. Inputs are random (the cost does not depend on them); KD runs its teacher live, as the
feature methods must. CPU time (``time.process_time``) is reported beside wall time: on a shared
machine it does not count the time other processes hold the core.

    PYTHONPATH=src python benchmarks/feature_step_cost.py --rounds 5 --steps 20
    PYTHONPATH=src python benchmarks/feature_step_cost.py --rounds 5 --steps 20 --student 16,32,64 \
        --out benchmarks/results/feature_step_cost_wide.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.config import DistillConfig
from kdlens.data import Batch
from kdlens.distill import build_distiller, list_distillers
from kdlens.models import create_model

SHAPE, CLASSES, N, BATCH = (1, 28, 28), 10, 3500, 128
OPTIONS = {
    "fitnets": {"teacher_layer": "features.6", "student_layer": "features.6"},
    "at": {
        "teacher_layers": ["features.2", "features.6"],
        "student_layers": ["features.2", "features.6"],
    },
}
# CRD with fewer negatives than the paper's 16384; the multi-layer methods on the deepest stage
# only (block 2, 14x14) instead of both blocks (their default).
DEEPEST = {"student_layers": ["features.6"], "teacher_layers": ["features.6"]}
PRE_RELU = {"student_layers": ["features.6:input"], "teacher_layers": ["features.6:input"]}
VARIANTS = {
    **{f"crd_k{k}": ("crd", {"nce_k": k}) for k in (4096, 1024, 256)},
    "nst_deepest": ("nst", DEEPEST),
    "vid_deepest": ("vid", DEEPEST),
    "ofd_deepest": ("ofd", PRE_RELU),
    "reviewkd_deepest": (
        "reviewkd",
        {"student_layers": ["features.6"], "teacher_layers": ["features.6:input"]},
    ),
}


def arms() -> dict[str, tuple[str, dict]]:
    out = {m: (m, OPTIONS.get(m, {})) for m in list_distillers()}
    out.update(VARIANTS)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--student", default="4,8,16", help="student channels and hidden width")
    parser.add_argument("--out", default="benchmarks/results/feature_step_cost.json")
    args = parser.parse_args()
    widths = [int(w) for w in args.student.split(",")]
    torch.set_num_threads(1)
    torch.manual_seed(0)
    teacher = create_model("cnn", SHAPE, CLASSES, channels=[16, 32], hidden=64).eval()
    labels = torch.arange(N) % CLASSES
    distillers, optimizers = {}, {}
    for name, (method, options) in arms().items():
        torch.manual_seed(1)
        student = create_model("cnn", SHAPE, CLASSES, channels=widths[:2], hidden=widths[2])
        config = DistillConfig(method=method, options={method: options} if options else {})
        d = build_distiller(config, student, teacher, SHAPE, num_examples=N).train()
        distillers[name] = d
        optimizers[name] = torch.optim.Adam(d.trainable_parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(2)

    def batch() -> Batch:
        index = torch.randperm(N, generator=g)[:BATCH]
        return Batch(torch.randn(BATCH, *SHAPE, generator=g), labels[index], index)

    def step(name: str, b: Batch) -> None:
        out = distillers[name](b)
        optimizers[name].zero_grad(set_to_none=True)
        out["loss"].backward()
        optimizers[name].step()

    wall: dict[str, list[float]] = {n: [] for n in distillers}
    cpu: dict[str, list[float]] = {n: [] for n in distillers}
    for name in distillers:  # warm-up: first-call costs, CRD's label sort, Z
        for _ in range(3):
            step(name, batch())
    for _ in range(args.rounds):
        batches = [batch() for _ in range(args.steps)]  # the same batches for every method
        for name in distillers:
            for b in batches:
                w, c = time.perf_counter(), time.process_time()
                step(name, b)
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)
    med_wall = {n: statistics.median(v) for n, v in wall.items()}
    med_cpu = {n: statistics.median(v) for n, v in cpu.items()}
    result = {
        "setting": {
            "input": list(SHAPE),
            "batch": BATCH,
            "num_examples": N,
            "teacher": "cnn [16, 32] hidden 64",
            "student": f"cnn {widths[:2]} hidden {widths[2]}",
            "threads": 1,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d"),
        },
        "median_step_ms": {n: 1000 * v for n, v in med_wall.items()},
        "median_step_cpu_ms": {n: 1000 * v for n, v in med_cpu.items()},
        "ratio_to_kd": {n: v / med_wall["kd"] for n, v in med_wall.items()},
        "cpu_ratio_to_kd": {n: v / med_cpu["kd"] for n, v in med_cpu.items()},
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    for n in distillers:
        print(
            f"{n:12s} {result['median_step_ms'][n]:7.2f} ms  x{result['ratio_to_kd'][n]:.2f}  "
            f"cpu {result['median_step_cpu_ms'][n]:7.2f} ms  x{result['cpu_ratio_to_kd'][n]:.2f}"
        )


if __name__ == "__main__":
    main()
