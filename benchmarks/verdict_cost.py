"""What a run's verdicts cost: drawing the bootstrap once, then every compare() and gap_closed().

Synthetic 10-class logits (the cost does not depend on their values) for a teacher, a scratch and
a distilled student plus further students; ``--verdicts`` compare() calls and one gap_closed(), as
the run would make them (the resampler drawn once, inside the first call). Median of repeats.

    PYTHONPATH=src python benchmarks/verdict_cost.py --n 1000 1500 --verdicts 10 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from kdlens.evaluate import verdicts


def models(n: int, count: int, classes: int = 10) -> tuple[torch.Tensor, list[torch.Tensor]]:
    g = torch.Generator().manual_seed(n)
    y = torch.randint(0, classes, (n,), generator=g)
    out = []
    for strength in torch.linspace(1.5, 3.0, count).tolist():
        logits = torch.randn(n, classes, generator=g)
        logits[torch.arange(n), y] += strength
        out.append(logits)
    return y, out


def one_run(n: int, n_verdicts: int, resamples: int) -> dict[str, float]:
    y, (teacher, scratch, *students) = models(n, n_verdicts + 2)
    verdicts._shared_resampler.cache_clear()  # a run draws its resamples anew
    start = time.perf_counter()
    verdicts.Resampler(n, resamples, 0)
    draw = time.perf_counter() - start
    verdicts._shared_resampler.cache_clear()
    start, cpu = time.perf_counter(), time.process_time()
    for student in students:
        verdicts.compare(y, student, scratch, resamples=resamples)
    compares = time.perf_counter() - start
    verdicts.gap_closed(y, teacher, scratch, students[-1], resamples=resamples)
    total, total_cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"total_s": total, "cpu_s": total_cpu, "draw_s": draw, "compares_s": compares}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 1500])
    parser.add_argument("--verdicts", type=int, default=10)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/verdict_cost.json")
    args = parser.parse_args()

    y, (a, b) = models(50, 2)
    verdicts.compare(y, a, b, resamples=10)  # first calls pay for lazy imports
    results = {}
    for n in args.n:
        runs = [one_run(n, args.verdicts, args.resamples) for _ in range(args.repeats)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        med["per_compare_s"] = (med["compares_s"] - med["draw_s"]) / args.verdicts
        results[str(n)] = med
        print(
            f"n={n}: {args.verdicts} compare + 1 gap_closed, {args.resamples} resamples: "
            f"{med['total_s']:.3f} s wall ({med['cpu_s']:.3f} s CPU); drawing the resamples "
            f"{med['draw_s']:.3f} s, then {med['per_compare_s'] * 1000:.0f} ms per compare"
        )
    doc = {
        "verdicts": args.verdicts,
        "resamples": args.resamples,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],  # the 2-core machine is shared with other jobs
        "median": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
