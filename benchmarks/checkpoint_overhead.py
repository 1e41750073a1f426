"""What per-epoch checkpointing (resumable state, issue 7) adds to the default run's time.

Runs the default config end to end with ``train.checkpoint_every=1`` (the default) and ``=0``
(no resumable state), interleaved (ABBA...) in one process after a warm-up, and times every
``StageCheckpoint.save`` call directly, so the overhead is also measured without run-to-run noise.

    python benchmarks/checkpoint_overhead.py --repeats 2
    python benchmarks/checkpoint_overhead.py --quick --out /tmp/ck.json   # smoke config, 1 pair

The default run is the shipped recipe (``configs/default.yaml``, what ``kdlens run`` uses).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kdlens.config import default_config_path, load_config
from kdlens.pipeline import run
from kdlens.run import StageCheckpoint

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], help="extra config overrides")
    parser.add_argument("--out", default="benchmarks/results/checkpointing.json")
    parser.add_argument("--quick", action="store_true", help="configs/smoke.yaml, one on/off pair")
    args = parser.parse_args()
    config_path = SMOKE if args.quick else default_config_path()
    if args.quick:
        args.repeats = 1

    save_seconds: list[float] = []
    real_save = StageCheckpoint.save

    def timed_save(self, *a, **kw):
        start = time.perf_counter()
        real_save(self, *a, **kw)
        save_seconds.append(time.perf_counter() - start)

    StageCheckpoint.save = timed_save
    runs: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        run(load_config(SMOKE), Path(tmp) / "warmup")  # first-call costs (oneDNN, imports)
        arms = ["on", "off", "off", "on"] * args.repeats
        for i, arm in enumerate(arms[: 2 * args.repeats]):
            every = 1 if arm == "on" else 0
            sets = [*args.set, f"teacher.train.checkpoint_every={every}"]
            sets.append(f"student.train.checkpoint_every={every}")
            # The readable stage's soft trees keep resumable state too (their own train section).
            sets.append(f"readable.soft_tree.train.checkpoint_every={every}")
            save_seconds.clear()
            start = time.perf_counter()
            out = Path(tmp) / f"run{i}"
            metrics = run(load_config(config_path, sets), out)
            total = time.perf_counter() - start
            runs.append(
                {
                    "arm": arm,
                    "total_seconds": total,
                    "save_seconds": sum(save_seconds),
                    "saves": len(save_seconds),
                    "stage_seconds": {
                        k: metrics["timings"][k] for k in ("teacher", "scratch", "kd")
                    },
                    "kd_accuracy": metrics["models"]["kd"]["accuracy"],
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    on = [r for r in runs if r["arm"] == "on"]
    off = [r for r in runs if r["arm"] == "off"]
    med_on = statistics.median(r["total_seconds"] for r in on)
    med_off = statistics.median(r["total_seconds"] for r in off)
    result = {
        "command": " ".join(
            ["python benchmarks/checkpoint_overhead.py", *(f"--set {s}" for s in args.set)]
            + (["--quick"] if args.quick else [])
            + [f"--repeats {args.repeats}", f"--out {args.out}"]
        ),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "runs": runs,
        "median_total_seconds_on": med_on,
        "median_total_seconds_off": med_off,
        "overhead_of_medians": med_on / med_off - 1,
        "save_share_of_run": statistics.median(r["save_seconds"] / r["total_seconds"] for r in on),
        "median_seconds_per_save": statistics.median(r["save_seconds"] / r["saves"] for r in on),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
