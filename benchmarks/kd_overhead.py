"""Epoch time of the distilled student (cached and live teacher) against the scratch student.

Side by side in one process, interleaved, median of repeated one-epoch runs, on the default recipe's
data and models (configs/default.yaml). The teacher is the recipe's CNN (its weights do not change the
cost, so it is not trained here).

    python benchmarks/kd_overhead.py --repeats 7
    python benchmarks/kd_overhead.py --quick --out /tmp/kd_overhead.json   # 1 repeat of 5 batches
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.config import default_config_path, load_config
from kdlens.data import BatchLoader
from kdlens.distill import Distiller, build_distiller, compute_logits
from kdlens.pipeline import EVAL_BATCH, prepare
from kdlens.train import fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="benchmarks/results/kd_overhead.json")
    parser.add_argument(
        "--quick", action="store_true", help="1 repeat of 5 batches: checks it runs"
    )
    args = parser.parse_args()

    # The recipe, as `kdlens run` uses it (the code defaults are neutral).
    config = load_config(default_config_path())
    ctx = prepare(config, Path("/nonexistent-kdlens-bench"))  # nothing is written
    update = {"epochs": 1, **({"max_batches": 5} if args.quick else {})}
    repeats = 1 if args.quick else args.repeats
    cfg = config.student.train.model_copy(update=update)
    teacher = ctx.build(config.teacher).eval()
    x, y = ctx.student_data
    loader = BatchLoader(x, y, ctx.normalizer, EVAL_BATCH, source_index=ctx.student_index)
    cache = compute_logits(teacher, loader)

    def arm(name: str):
        student = ctx.build(config.student)
        if name == "scratch":
            return Distiller(student)
        distiller = build_distiller(config.distill, student, teacher, ctx.dataset.input_shape)
        if name == "kd_cached":
            distiller.set_teacher_cache(cache)
        return distiller

    times: dict[str, list[float]] = {"scratch": [], "kd_cached": [], "kd_live": []}
    for r in range(repeats):
        for name in times:
            distiller = arm(name)
            start = time.perf_counter()
            rows = ctx.train_loader(cfg, r, ctx.student_data, ctx.student_index)
            fit(distiller, rows, ctx.eval_loader("val"), cfg)
            times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "median_epoch_seconds": med,
        "ratio_kd_cached_to_scratch": med["kd_cached"] / med["scratch"],
        "ratio_kd_live_to_scratch": med["kd_live"] / med["scratch"],
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "seconds": times,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for k, v in med.items():
        print(f"{k:>10}: {v:.3f} s/epoch (median of {repeats})")
    print(f"kd (cached) / scratch = {result['ratio_kd_cached_to_scratch']:.2f}")
    print(f"kd (live)   / scratch = {result['ratio_kd_live_to_scratch']:.2f}")


if __name__ == "__main__":
    main()
