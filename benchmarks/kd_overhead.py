"""Epoch time of the distilled student (cached and live teacher) against the scratch student.

Side by side in one process, interleaved, median of repeated one-epoch runs, on the default data and
models. The teacher is the default CNN (its weights do not change the cost, so it is not trained here).

    python benchmarks/kd_overhead.py --repeats 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.config import RunConfig
from kdlens.data import BatchLoader
from kdlens.distill import Distiller, compute_logits, create_distiller
from kdlens.pipeline import EVAL_BATCH, prepare
from kdlens.train import fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/kd_overhead.json")
    args = parser.parse_args()

    config = RunConfig()
    ctx = prepare(config, Path("/nonexistent-kdlens-bench"))  # nothing is written
    cfg = config.student.train.model_copy(update={"epochs": 1})
    teacher = ctx.build(config.teacher).eval()
    x, y = ctx.tensors("train")
    cache = compute_logits(teacher, BatchLoader(x, y, ctx.normalizer, EVAL_BATCH))
    kwargs = {"temperature": config.distill.temperature, "alpha": config.distill.alpha}

    def arm(name: str):
        student = ctx.build(config.student)
        if name == "scratch":
            return Distiller(student)
        distiller = create_distiller("kd", student, teacher, **kwargs)
        if name == "kd_cached":
            distiller.set_teacher_cache(cache)
        return distiller

    times: dict[str, list[float]] = {"scratch": [], "kd_cached": [], "kd_live": []}
    for r in range(args.repeats):
        for name in times:
            distiller = arm(name)
            start = time.perf_counter()
            fit(distiller, ctx.train_loader(cfg, r), ctx.eval_loader("val"), cfg)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "median_epoch_seconds": med,
        "ratio_kd_cached_to_scratch": med["kd_cached"] / med["scratch"],
        "ratio_kd_live_to_scratch": med["kd_live"] / med["scratch"],
        "threads": torch.get_num_threads(),
        "repeats": args.repeats,
        "seconds": times,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k, v in med.items():
        print(f"{k:>10}: {v:.3f} s/epoch (median of {args.repeats})")
    print(f"kd (cached) / scratch = {result['ratio_kd_cached_to_scratch']:.2f}")
    print(f"kd (live)   / scratch = {result['ratio_kd_live_to_scratch']:.2f}")


if __name__ == "__main__":
    main()
