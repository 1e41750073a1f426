"""A 16-trial temperature x alpha search on mnist5k, with the median pruner and without it:
training epochs used, the best trial's validation accuracy, and Optuna's bookkeeping per trial.

Scaled to a 2-core machine: teacher cnn 8 epochs (trained once, shared by every trial and
repeat through ``--teachers``), student mlp [400, 400] for 8 epochs, one torch thread, one
worker. Each repeat is one study name, used by both arms, so both draw the same random start
(TPE's first 10 trials are random; they diverge once pruned trials change what TPE learns).

Bookkeeping: the worker loop's wall time (``work``) minus the time spent inside
``pipeline.run`` (the trials' training and their run folders), per trial: storage reads and
writes, sampling, suggesting, pruning decisions, stale-trial checks, the config of each trial.

    PYTHONPATH=src python benchmarks/search_tune.py --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import kdlens.pipeline
import kdlens.search.worker
from kdlens.config import load_config
from kdlens.search import parse_space
from kdlens.search.teachers import ensure_teacher
from kdlens.search.tune import run_tune

SPACE = ["distill.temperature=log:1:32", "distill.alpha=float:0:1"]


class Timed:
    """Wrap a function and add up the wall time spent in it."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def one_search(out: Path, pruner: str, trials: int, overrides, teachers: Path) -> dict:
    run, work = Timed(kdlens.pipeline.run), Timed(kdlens.search.worker.work)
    kdlens.pipeline.run, kdlens.search.worker.work = run, work
    try:
        start = time.perf_counter()
        run_tune(
            None,
            parse_space(SPACE),
            trials,
            out,
            overrides,
            pruner=pruner,
            seeds=0,
            teachers_dir=teachers,
        )
        total = time.perf_counter() - start
    finally:
        kdlens.pipeline.run, kdlens.search.worker.work = run.fn, work.fn
    table = json.loads((out / "trials.json").read_text())
    per_trial_run = run.seconds / run.calls
    bookkeeping = (work.seconds - run.seconds) / run.calls
    return {
        "epochs": table["epochs"],
        "best_val_accuracy": table["best"]["value"],
        "best_params": table["best"]["params"],
        "counts": table["counts"],
        "total_seconds": total,
        "worker_seconds": work.seconds,
        "run_seconds": run.seconds,
        "trials_run": run.calls,
        "bookkeeping_seconds_per_trial": bookkeeping,
        "bookkeeping_share_of_a_trial": bookkeeping / per_trial_run,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--teacher-epochs", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/search_tune.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = [
        f"teacher.train.epochs={args.teacher_epochs}",
        f"student.train.epochs={args.student_epochs}",
        "student.model_args.hidden=[400, 400]",
        "explain.enabled=false",
        "readable.students=[]",
        "readable.sweeps=[]",
        "deploy.quantize=false",
    ]
    results: dict[str, list[dict]] = {"none": [], "median": []}
    with tempfile.TemporaryDirectory() as tmp:
        teachers = Path(tmp) / "teachers"
        start = time.perf_counter()
        ensure_teacher(load_config(None, overrides), teachers)
        teacher_seconds = time.perf_counter() - start
        for rep in range(args.repeats):
            for pruner in ("none", "median") if rep % 2 == 0 else ("median", "none"):
                out = Path(tmp) / pruner / f"rep{rep}"  # the study name: the same in both arms
                r = one_search(out, pruner, args.trials, overrides, teachers)
                results[pruner].append(r)
                print(
                    f"repeat {rep}, pruner {pruner}: {r['epochs']} epochs, best "
                    f"{r['best_val_accuracy']:.4f}, {r['total_seconds']:.0f}s, bookkeeping "
                    f"{1000 * r['bookkeeping_seconds_per_trial']:.0f} ms/trial "
                    f"({100 * r['bookkeeping_share_of_a_trial']:.2f}%)",
                    flush=True,
                )

    def median(arm: str, key: str) -> float:
        return statistics.median(r[key] for r in results[arm])

    epochs_none, epochs_pruned = median("none", "epochs"), median("median", "epochs")
    pairs = [
        100 * (p["best_val_accuracy"] - n["best_val_accuracy"])
        for n, p in zip(results["none"], results["median"], strict=True)
    ]
    bookkeeping = [r["bookkeeping_share_of_a_trial"] for arm in results.values() for r in arm]
    summary = {
        "median_epochs": {"none": epochs_none, "median": epochs_pruned},
        "epochs_saved": 1 - epochs_pruned / epochs_none,
        "median_best_val_accuracy": {
            "none": median("none", "best_val_accuracy"),
            "median": median("median", "best_val_accuracy"),
        },
        "best_val_accuracy_difference_points_per_repeat": pairs,
        "median_seconds": {
            "none": median("none", "total_seconds"),
            "median": median("median", "total_seconds"),
        },
        "median_bookkeeping_ms_per_trial": 1000
        * statistics.median(
            r["bookkeeping_seconds_per_trial"] for a in results.values() for r in a
        ),
        "median_bookkeeping_share": statistics.median(bookkeeping),
    }
    document = {
        "space": SPACE,
        "trials": args.trials,
        "overrides": overrides,
        "teacher_seconds": teacher_seconds,
        "runs": results,
        "summary": summary,
        "environment": {
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    Path(args.out).write_text(json.dumps(document, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
