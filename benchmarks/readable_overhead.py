"""What the default readable students add to the default run: the readable stage alone, on a
saved teacher, timed in wall-clock and in CPU seconds of this process (on a shared machine the CPU
seconds are the better estimate of the wall-clock time on an idle one, with one thread).

The teacher run gives the data, split and teacher (its config and weights); the readable section
is the shipped recipe's (``configs/default.yaml``), with any ``--set`` applied.

    OMP_NUM_THREADS=1 python benchmarks/readable_overhead.py --teacher-run RUN_DIR \
        --out benchmarks/results/readable_overhead.json
    python benchmarks/readable_overhead.py --teacher-run RUN_DIR --quick --out /tmp/r.json

``--quick``: soft trees of one epoch of 5 batches, a three-depth tree sweep (checks that it runs).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from kdlens.config import apply_overrides, config_from_dict, default_config_path, load_config
from kdlens.distill import compute_logits
from kdlens.pipeline import prepare
from kdlens.run import RunFolder
from kdlens.stages.readable import run as readable_stage

QUICK = [
    "readable.soft_tree.train.epochs=1",
    "readable.soft_tree.train.max_batches=5",
    "readable.sweep_tree_depths=[1, 2, 3]",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher-run", required=True, help="a default run folder (seed 0)")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--out", default="benchmarks/results/readable_overhead.json")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs")
    args = parser.parse_args()
    teacher_run = RunFolder(args.teacher_run, write=False)
    raw = load_config(teacher_run.config).model_dump(mode="json")
    raw["readable"] = load_config(default_config_path()).readable.model_dump(mode="json")
    sets = [f"teacher.checkpoint={teacher_run.weights('teacher')}", *args.set]
    config = config_from_dict(apply_overrides(raw, sets + (QUICK if args.quick else [])))
    with tempfile.TemporaryDirectory() as tmp:
        ctx = prepare(config, Path(tmp) / "run")
        ctx.folder.make_dirs()  # the soft trees' training stages keep their state there
        ctx.test_logits["teacher"] = compute_logits(ctx.models["teacher"], ctx.eval_loader("test"))
        ctx.metrics["models"] = {}
        wall, cpu = time.perf_counter(), time.process_time()
        readable_stage(ctx)
        result = {
            "wall_seconds": time.perf_counter() - wall,
            "cpu_seconds": time.process_time() - cpu,
            "torch_threads": torch.get_num_threads(),
            "stage_timings": {k: v for k, v in ctx.timings.items() if k != "data"},
            "readable": config.readable.model_dump(mode="json"),
            "models": {
                n: {k: m[k] for k in ("accuracy", "fidelity") if k in m}
                for n, m in ctx.metrics["models"].items()
            },
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("wall_seconds", "cpu_seconds", "models")}, indent=2))


if __name__ == "__main__":
    main()
