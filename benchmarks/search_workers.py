"""Two search workers against one: the wall time of a 4-trial sweep grid on mnist5k.

One torch thread per worker (``--workers 2`` gives each worker cores // 2 = 1 thread on a 2-core
machine; the 1-worker run sets 1 thread). The teacher is trained once before the timings and
shared through ``--teachers`` (it is what a grid of a seed shares anyway), so the timings are
the four trials (scratch + distilled student each, no later stages) and the workers' start-up.
Repeats alternate the order of the two settings; medians are reported, with the CPU seconds of
the command and its worker processes (the work done, whatever the machine's load).

    PYTHONPATH=src python benchmarks/search_workers.py --repeats 3
    PYTHONPATH=src python benchmarks/search_workers.py --quick --out /tmp/w.json   # 5 batches/epoch
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kdlens.config import load_config
from kdlens.search import run_sweep
from kdlens.search.teachers import ensure_teacher

CORE = ["explain.enabled=false", "readable.students=[]", "readable.sweeps=[]"]
GRID = {"distill.temperature": [2, 8], "distill.alpha": [0.0, 0.5]}


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the spawned workers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/search_workers.json")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 1 epoch of 5 batches")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.quick:
        args.repeats, args.teacher_epochs, args.student_epochs = 1, 1, 1
    overrides = [
        *CORE,
        "deploy.quantize=false",
        f"teacher.train.epochs={args.teacher_epochs}",
        f"student.train.epochs={args.student_epochs}",
    ]
    if args.quick:
        overrides += ["teacher.train.max_batches=5", "student.train.max_batches=5"]
    base = load_config(None, overrides)
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        teachers = Path(tmp) / "teachers"
        start = time.perf_counter()
        ensure_teacher(base, teachers)
        teacher_seconds = time.perf_counter() - start
        for rep in range(args.repeats):
            for workers in (1, 2) if rep % 2 == 0 else (2, 1):
                out = Path(tmp) / f"rep{rep}_w{workers}"
                loads.append(os.getloadavg()[0])
                before = cpu_seconds()
                start = time.perf_counter()
                run_sweep(None, GRID, 1, out, overrides, teachers_dir=teachers, workers=workers)
                times[workers].append(time.perf_counter() - start)
                cpu[workers].append(cpu_seconds() - before)
                print(
                    f"repeat {rep}, {workers} worker(s): {times[workers][-1]:.1f}s wall, "
                    f"{cpu[workers][-1]:.1f} CPU-s",
                    flush=True,
                )
    one, two = statistics.median(times[1]), statistics.median(times[2])
    result = {
        "grid": GRID,
        "overrides": overrides,
        "teacher_seconds": teacher_seconds,
        "seconds": {str(k): v for k, v in times.items()},
        "median_seconds": {"1": one, "2": two},
        "ratio_2_to_1": two / one,
        "cpu_seconds": {str(k): v for k, v in cpu.items()},
        "median_cpu_seconds": {str(k): statistics.median(v) for k, v in cpu.items()},
        "load_average_1min_at_starts": loads,
        "environment": {
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"median: 1 worker {one:.1f}s, 2 workers {two:.1f}s, ratio {two / one:.2f}")


if __name__ == "__main__":  # spawned workers import this module without running it
    main()
