"""What the verdicts stage costs inside a finished run: its models, its test split, its records.

Reads a run folder (e.g. the default run's), then repeats what the stage does: draw the run's
bootstrap resamples, judge every model with a twin, the teacher-scratch gap, and save the test
logits. Prints the median and the run's own in-run figure (``timings.verdicts``).

    PYTHONPATH=src python benchmarks/verdict_stage.py runs/demo --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from kdlens.evaluate.verdicts import Resampler
from kdlens.run import load_run
from kdlens.stages.verdicts import RESAMPLES, run_verdicts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/verdict_stage.json")
    args = parser.parse_args()

    run = load_run(args.run_dir, need_metrics=True)
    logits = load_file(str(run.folder.test_logits))
    y = run.tensors("test")[1]
    times = []
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = run_verdicts(run.records, logits, y, Resampler(len(y), RESAMPLES, run.config.seed))
        with tempfile.TemporaryDirectory() as tmp:  # the stage also saves the test logits
            (Path(tmp) / "t.safetensors").write_bytes(save(logits))
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    doc = {
        "run": Path(args.run_dir).name,
        "n_test": len(y),
        "verdicts": list(out["verdicts"]),
        "in_run_s": run.metrics["timings"].get("verdicts"),
        "median_wall_s": statistics.median(t[0] for t in times),
        "median_cpu_s": statistics.median(t[1] for t in times),
        "wall_s": [t[0] for t in times],
        "threads": torch.get_num_threads(),
        "load_average_1min": os.getloadavg()[0],
    }
    print(json.dumps(doc, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
