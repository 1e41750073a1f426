"""Deployment benchmark (issue 5): int8 size/accuracy, ONNX Runtime vs PyTorch latency, pruning
with a KD fine-tune vs a hard-label fine-tune, on mnist5k with the default teacher and student.

    PYTHONPATH=src python benchmarks/deploy_mnist5k.py --seeds 0 1 2
    PYTHONPATH=src python benchmarks/deploy_mnist5k.py --quick --out /tmp/k5q --results /tmp/k5q.json

The runs use the shipped recipe (``configs/default.yaml``, what ``kdlens run`` uses) plus the
deploy settings below. ``--quick``: configs/smoke.yaml, seed 0, short timings (checks that it runs).

Each seed is a whole run (its own split, teacher and students). A finished seed folder with the
same config is read back instead of rerun, so seeds can also run as parallel processes
(``--seeds 1``, ``--seeds 2``) and be aggregated afterwards by the command above.

Writes one run folder per seed under --out and benchmarks/results/deploy_mnist5k.json.
Timings are medians (torch.utils.benchmark), single-threaded, PyTorch and ONNX Runtime timed
side by side in one process; the machine is a shared 2-core CPU, so trust ratios over absolutes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
from pathlib import Path

import torch

from kdlens.config import default_config_path, load_config
from kdlens.deploy.onnx_export import OrtModel
from kdlens.evaluate.compression import measure_speed
from kdlens.pipeline import run
from kdlens.run import RunFolder, load_run

SPARSITIES = [0.5, 0.8, 0.9]
SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def _pct(s: float) -> str:
    return f"{100 * s:g}"


def one_seed(seed: int, out: Path, quick: bool = False) -> dict:
    overrides = [
        f"seed={seed}",
        f"deploy.prune={SPARSITIES}",
        "deploy.export=onnx",
        f"deploy.timing_seconds={0.02 if quick else 0.5}",
    ]
    config = load_config(SMOKE if quick else default_config_path(), overrides)
    folder = RunFolder(out / f"seed{seed}", write=False)
    # A finished run with the same config is read back, so an interrupted benchmark resumes.
    if folder.metrics.is_file() and load_config(folder.config) == config:
        m = folder.read_json(folder.metrics)
    else:
        m = run(config, folder.path, overwrite=True)
    models = m["models"]
    # The models the deploy stage measured (the readable stage's surrogates have no size or speed).
    timed = {n: v for n, v in models.items() if "size_bytes" in v}
    kd, q = models["kd"], models["kd_int8"]
    onnx = kd["onnx"]
    row = {
        "seed": seed,
        "accuracy": {n: v["accuracy"] for n, v in models.items()},
        "fidelity": {n: v.get("fidelity") for n, v in models.items()},
        "size_bytes": {n: v["size_bytes"] for n, v in timed.items()},
        "latency_ms_b1": {n: v["latency_ms_b1"] for n, v in timed.items()},
        "throughput_b256": {n: v["throughput_b256"] for n, v in timed.items()},
        "flops": {n: v["flops"] for n, v in timed.items()},
        "int8_size_ratio": kd["size_bytes"] / q["size_bytes"],
        "int8_accuracy_points": 100 * (q["accuracy"] - kd["accuracy"]),
        "onnx": {
            "max_abs_logit_diff": onnx["max_abs_logit_diff"],
            "pytorch_latency_ms_b1": onnx["pytorch"]["latency_ms_b1"],
            "onnxruntime_latency_ms_b1": onnx["onnxruntime"]["latency_ms_b1"],
            "onnxruntime_speedup_b1": onnx["onnxruntime_speedup_b1"],
            "pytorch_throughput_b256": onnx["pytorch"]["throughput_b256"],
            "onnxruntime_throughput_b256": onnx["onnxruntime"]["throughput_b256"],
        },
        "pruning": {},
        "summary": m["summary"],
        "timing_side_by_side": remeasure(folder, 1 if quick else 3, 0.02 if quick else 0.2),
        "timings": m["timings"],
    }
    for s in SPARSITIES:
        k, h = models[f"kd_pruned{_pct(s)}"], models[f"kd_pruned{_pct(s)}_hard"]
        row["pruning"][str(s)] = {
            "sparsity": k["sparsity"],
            "kd_accuracy_points_vs_unpruned": 100 * (k["accuracy"] - kd["accuracy"]),
            "hard_accuracy_points_vs_unpruned": 100 * (h["accuracy"] - kd["accuracy"]),
            "kd_minus_hard_accuracy_points": 100 * (k["accuracy"] - h["accuracy"]),
            "kd_minus_hard_fidelity_points": 100 * (k["fidelity"] - h["fidelity"]),
        }
    return row


TIMED = ["teacher", "kd", "kd_int8", "kd_pruned50", "kd_onnxruntime"]


def remeasure(folder: RunFolder, rounds: int = 3, seconds: float = 0.2) -> dict:
    """Time the main models again, interleaved (round-robin, ``rounds`` times), with the
    single-thread CPU clock and the wall clock; medians over rounds. Interleaving puts every
    model under the same background load, so the ratios between them are the steady numbers."""
    r = load_run(folder.path)
    x = r.normalizer(r.tensors("test")[0])
    models = {n: r.load_model(n) for n in TIMED if n != "kd_onnxruntime"}
    models["kd_onnxruntime"] = OrtModel(folder.export / "kd.onnx", threads=1)  # deploy.export
    samples = {c: {n: {"b1": [], "b256": []} for n in models} for c in ("cpu", "wall")}
    for _ in range(rounds):
        for clock in ("cpu", "wall"):
            for name, model in models.items():
                sp = measure_speed(model, x, 2, seconds, threads=1, clock=clock)
                samples[clock][name]["b1"].append(sp["latency_ms_b1"])
                samples[clock][name]["b256"].append(sp["throughput_b256"])
    out = {}
    for clock, per_model in samples.items():
        med = {
            n: {
                "latency_ms_b1": statistics.median(v["b1"]),
                "throughput_b256": statistics.median(v["b256"]),
            }
            for n, v in per_model.items()
        }
        lat = {n: v["latency_ms_b1"] for n, v in med.items()}
        out[clock] = {
            "models": med,
            "int8_speedup_b1": lat["kd"] / lat["kd_int8"],
            "int8_speedup_b256": med["kd_int8"]["throughput_b256"] / med["kd"]["throughput_b256"],
            "onnxruntime_speedup_b1": lat["kd"] / lat["kd_onnxruntime"],
            "student_speedup_b1_vs_teacher": lat["teacher"] / lat["kd"],
            "pruned50_speedup_b1": lat["kd"] / lat["kd_pruned50"],
        }
    return out


def mean_std(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def aggregate(rows: list[dict]) -> dict:
    agg = {
        "kd_accuracy": mean_std([r["accuracy"]["kd"] for r in rows]),
        "kd_int8_accuracy": mean_std([r["accuracy"]["kd_int8"] for r in rows]),
        "int8_size_ratio": mean_std([r["int8_size_ratio"] for r in rows]),
        "int8_accuracy_points": mean_std([r["int8_accuracy_points"] for r in rows]),
        "onnx_max_abs_logit_diff": max(r["onnx"]["max_abs_logit_diff"] for r in rows),
        "median_latency_ms_b1": {
            k: statistics.median(r["onnx"][k] for r in rows)
            for k in (
                "pytorch_latency_ms_b1",
                "onnxruntime_latency_ms_b1",
                "onnxruntime_speedup_b1",
            )
        },
        "median_latency_ms_b1_by_model": {
            n: statistics.median(r["latency_ms_b1"][n] for r in rows)
            for n in rows[0]["latency_ms_b1"]
        },
        "median_throughput_b256_by_model": {
            n: statistics.median(r["throughput_b256"][n] for r in rows)
            for n in rows[0]["throughput_b256"]
        },
        "teacher_vs_student": {
            k: statistics.median(r["summary"]["teacher_vs_student"][k] for r in rows)
            for k in ("params", "size_bytes", "flops", "latency_b1", "throughput_b256")
        },
        "pruning": {},
    }
    for clock in ("cpu", "wall"):
        sides = [r["timing_side_by_side"][clock] for r in rows]
        agg[f"side_by_side_{clock}_median"] = {
            "latency_ms_b1": {
                n: statistics.median(t["models"][n]["latency_ms_b1"] for t in sides) for n in TIMED
            },
            "throughput_b256": {
                n: statistics.median(t["models"][n]["throughput_b256"] for t in sides)
                for n in TIMED
            },
            **{k: statistics.median(t[k] for t in sides) for k in sides[0] if k != "models"},
        }
    for s in SPARSITIES:
        part = [r["pruning"][str(s)] for r in rows]
        agg["pruning"][str(s)] = {
            k: mean_std([p[k] for p in part]) for k in part[0] if k != "sparsity"
        } | {"sparsity": part[0]["sparsity"]}
    return agg


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="runs/bench_deploy")
    parser.add_argument("--results", default="benchmarks/results/deploy_mnist5k.json")
    parser.add_argument("--quick", action="store_true", help="configs/smoke.yaml, first seed")
    args = parser.parse_args()
    rows = []
    out = Path(args.out)
    for seed in args.seeds[:1] if args.quick else args.seeds:
        rows.append(one_seed(seed, out, args.quick))
        print(json.dumps(rows[-1]["pruning"], indent=1), flush=True)
    result = {
        "command": f"PYTHONPATH=src python benchmarks/deploy_mnist5k.py --seeds {' '.join(map(str, args.seeds))}",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} CPU, 2 cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.0f} at the end); aggregation process had {torch.get_num_threads()} torch "
        "thread(s); timings single-threaded",
        "sparsities": SPARSITIES,
        "aggregate": aggregate(rows),
        "per_seed": rows,
    }
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["aggregate"], indent=1))


if __name__ == "__main__":
    main()
