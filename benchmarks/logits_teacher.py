"""Epoch time of a student distilled from a ``logits:`` teacher against the scratch student.

The default recipe's data and student (configs/default.yaml: mnist5k, an 800-800 MLP), one
epoch each, interleaved, median of repeats, in one process. The teacher is a ``.npy`` file of
logits for every row of the dataset (random numbers: the cost does not depend on them). Two
ways the run can use it: the saved rows of the training split set once as the distiller's
cache (what ``kdlens run`` does, lookup included in the timing), and a lookup by each batch's
dataset indices (``distill.cache_teacher_logits: false``).

    python benchmarks/logits_teacher.py --repeats 7 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from kdlens.config import default_config_path, load_config
from kdlens.data import create_dataset
from kdlens.distill import Distiller, build_distiller
from kdlens.pipeline import prepare
from kdlens.train import fit, use_teacher_cache


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/logits_teacher.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        logits = Path(tmp) / "teacher_logits.npy"
        n = len(create_dataset(load_config(default_config_path()).data.name))
        np.save(logits, np.random.default_rng(0).normal(size=(n, 10)).astype(np.float32))
        config = load_config(
            default_config_path(),
            [f"teacher.model=logits:{logits}", "teacher.accept_weak=true"],  # random rows
        )
        ctx = prepare(config, Path(tmp) / "never-written")
        cfg = config.student.train.model_copy(update={"epochs": 1})
        teacher = ctx.models["teacher"]
        x, y = ctx.student_data

        def arm(name: str):
            student = ctx.build(config.student)
            if name == "scratch":
                return Distiller(student)
            distill = config.distill
            if name == "kd_logits_by_row":
                distill = distill.model_copy(update={"cache_teacher_logits": False})
            return build_distiller(distill, student, teacher, ctx.dataset.input_shape)

        names = ("scratch", "kd_logits_cached", "kd_logits_by_row")
        times: dict[str, list[float]] = {k: [] for k in names}  # CPU seconds of this thread
        walls: dict[str, list[float]] = {k: [] for k in names}
        for r in range(args.repeats):
            for name in times:
                distiller = arm(name)
                start, wall = time.process_time(), time.perf_counter()
                if name == "kd_logits_cached":  # as train_stage does, once per stage
                    use_teacher_cache(ctx, distiller, cfg, (x, y), ctx.student_index)
                loader = ctx.train_loader(cfg, r, (x, y), ctx.student_index)
                fit(distiller, loader, ctx.eval_loader("val"), cfg)
                times[name].append(time.process_time() - start)
                walls[name].append(time.perf_counter() - wall)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "date": date.today().isoformat(),
        "clock": "process CPU time (one thread: steady on a busy machine)",
        "median_epoch_seconds": med,
        "median_epoch_wall_seconds": {k: statistics.median(v) for k, v in walls.items()},
        "ratio_cached_to_scratch": med["kd_logits_cached"] / med["scratch"],
        "ratio_by_row_to_scratch": med["kd_logits_by_row"] / med["scratch"],
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "torch": torch.__version__,
        "platform": platform.platform(),
        "seconds": times,
        "wall_seconds": walls,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k, v in med.items():
        print(f"{k:>18}: {v:.3f} CPU s/epoch (median of {args.repeats})")
    print(f"logits (cached) / scratch = {result['ratio_cached_to_scratch']:.3f}")
    print(f"logits (by row) / scratch = {result['ratio_by_row_to_scratch']:.3f}")


if __name__ == "__main__":
    main()
