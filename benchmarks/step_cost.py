"""Training-step cost of every distillation method against plain KD, on the same student.

One thread; a small CNN student and the default CNN teacher on 28x28 inputs (random pixels: the
cost does not depend on them). A step is forward + backward + optimizer step. Methods run side
by side, interleaved round by round; the figure per method is the median step time over all
rounds. KD is measured with the teacher run every step ("kd", as the feature methods must) and
with cached teacher logits ("kd_cached", what kdlens does when the input is not augmented).

    PYTHONPATH=src python benchmarks/step_cost.py --rounds 40 --steps 10
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.config import DistillConfig, TrainConfig
from kdlens.data import Batch
from kdlens.distill import build_distiller, list_distillers
from kdlens.errors import ConfigError
from kdlens.models import create_model
from kdlens.train import make_optimizer

SHAPE, CLASSES = (1, 28, 28), 10
TEACHER = {"channels": [32, 64], "hidden": 128}  # the default teacher when this was measured
STUDENT = {"channels": [8, 16], "hidden": 32}
# Block outputs (after ReLU) of both CNNs: features.2 and features.6.
OPTIONS = {
    "fitnets": {"teacher_layer": "features.6", "student_layer": "features.6"},
    "at": {"teacher_layers": ["features.2", "features.6"], "student_layers": ["features.2", "features.6"]},
    "sp": {"teacher_layers": ["features.6"], "student_layers": ["features.6"]},
}  # fmt: skip


def arms(methods: list[str]) -> dict[str, dict]:
    out = {"kd": {"method": "kd"}, "kd_cached": {"method": "kd", "cached": True}}
    out["kd_ls"] = {"method": "kd", "options": {"logit_standardization": True}}
    for m in methods:
        out.setdefault(m, {"method": m})
    return out


def build(arm: dict, teacher: torch.nn.Module, seed: int, num_examples: int):
    torch.manual_seed(seed)
    student = create_model("cnn", SHAPE, CLASSES, **STUDENT)
    method = arm["method"]
    options = {method: OPTIONS.get(method, {}), **arm.get("options", {})}
    config = DistillConfig(method=method, temperature=4.0, alpha=0.1, options=options)
    # num_examples: the rows batch.index points into (CRD's memory bank is one entry per row).
    distiller = build_distiller(config, student, teacher, SHAPE, num_examples=num_examples)
    distiller.train()
    return distiller


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method per round")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--methods", default="", help="comma-separated; default: all registered")
    parser.add_argument("--out", default="benchmarks/results/step_cost.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    methods = args.methods.split(",") if args.methods else list_distillers()
    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    x = torch.randn(n, *SHAPE, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    teacher = create_model("cnn", SHAPE, CLASSES, **TEACHER).eval()
    with torch.no_grad():
        cache = torch.cat([teacher(x[i : i + 512]) for i in range(0, n, 512)])
    batches = [
        Batch(x[i : i + args.batch], y[i : i + args.batch], torch.arange(i, i + args.batch))
        for i in range(0, n, args.batch)
    ]
    train = TrainConfig(optimizer="sgd", lr=0.01)

    setups, refused = {}, {}
    for name, arm in arms(methods).items():
        try:
            distiller = build(arm, teacher, 0, n)
        except ConfigError as e:
            refused[name] = str(e)
            continue
        if arm.get("cached"):
            distiller.set_teacher_cache(cache)
        setups[name] = (distiller, make_optimizer(distiller.trainable_parameters(), train))

    def step(distiller, optimizer, batch) -> None:
        optimizer.zero_grad()
        distiller(batch)["loss"].backward()
        optimizer.step()

    times: dict[str, list[float]] = {name: [] for name in setups}
    for distiller, optimizer in setups.values():  # warm-up
        for batch in batches[:2]:
            step(distiller, optimizer, batch)
    for _ in range(args.rounds):
        for name, (distiller, optimizer) in setups.items():
            for batch in batches:
                start = time.perf_counter()
                step(distiller, optimizer, batch)
                times[name].append(time.perf_counter() - start)

    median_ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
    result = {
        "setting": {
            "threads": 1,
            "batch": args.batch,
            "input": list(SHAPE),
            "teacher": {"model": "cnn", **TEACHER},
            "student": {"model": "cnn", **STUDENT},
            "steps_per_method": args.rounds * args.steps,
            "torch": torch.__version__,
        },
        "median_step_ms": median_ms,
        "ratio_to_kd": {k: v / median_ms["kd"] for k, v in median_ms.items()},
        "refused": refused,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    width = max(map(len, median_ms))
    for k, v in sorted(median_ms.items(), key=lambda kv: kv[1]):
        print(f"{k:<{width}}  {v:7.2f} ms  x{result['ratio_to_kd'][k]:.2f}")
    for k, v in refused.items():
        print(f"{k}: refused: {v}")


if __name__ == "__main__":
    main()
