"""What the explanations cost: each part of ``kdlens report`` on a finished run, wall and CPU seconds.

    PYTHONPATH=src python benchmarks/explain_cost.py RUN_DIR [--repeats 3] [--probe-epochs] [--threads 1]
    PYTHONPATH=src python benchmarks/explain_cost.py RUN_DIR --quick --probe-epochs --out /tmp/e.json

RUN_DIR is a folder written by ``kdlens run``. On a busy shared machine a run's own stage times and
a later report's times are taken under different loads, so ``--probe-epochs`` also times one
training epoch of the teacher, the scratch and the kd student *in this process, interleaved with
the explanation passes*, and projects the run's training time as epochs x seconds per epoch; the
share of explanations is then measured under the same conditions.
Writes benchmarks/results/explain_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.explain import compute as c
from kdlens.explain.inputs import from_run_dir
from kdlens.report.figures import save_figures
from kdlens.report.html import render_html
from kdlens.run import RunFolder
from kdlens.utils import read_json


def _timed(fn, *args):
    w, p = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - w, time.process_time() - p


def one_pass(run: Path, scratch: Path) -> dict[str, dict[str, float]]:
    parts: dict[str, dict[str, float]] = {}

    def rec(name, wall, cpu=None):
        parts[name] = {"wall": wall, "cpu": cpu}

    inp, w, p = _timed(from_run_dir, run)
    rec("load run folder (report command only)", w, p)
    order = torch.randperm(len(inp.y), generator=torch.Generator().manual_seed(inp.seed))
    explain = {"models": list(inp.test_logits), "torch_models": list(inp.models)}
    explain["dark_knowledge"], w, p = _timed(c.dark_knowledge, inp, order[: inp.config.n_show])
    rec("dark knowledge", w, p)
    sel = order[: min(inp.config.n_examples, len(inp.y))]
    (at, fa, times), w, p = _timed(c.attributions_and_faithfulness, inp, sel)
    rec("attributions + faithfulness", w, p)
    for k, v in times.items():
        rec(f"  {k}", v)
    explain["disagreements"], w, p = _timed(c.disagreements, inp)
    rec("disagreements", w, p)
    full = {
        **c.clean(explain),
        "schema_version": c.SCHEMA_VERSION,
        **c.run_header(inp),
        "attributions": c.clean(at),
        "faithfulness": c.clean(fa),
        "timings": {},
    }
    figures, w, p = _timed(save_figures, full, scratch / "figures")
    rec("figures (matplotlib)", w, p)
    _, w, p = _timed(
        render_html, read_json(RunFolder(run, write=False).metrics), full, figures, "bench"
    )
    rec("report.html", w, p)
    return parts


def epoch_costs(run: Path, scratch: Path) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds of one training epoch of each model, on the data ``kdlens run``
    trains it on (the teacher's and the students' rows), with the run's distiller."""
    from kdlens.config import load_config
    from kdlens.data import BatchLoader, is_augmenting
    from kdlens.distill import Distiller, build_distiller, compute_logits
    from kdlens.pipeline import EVAL_BATCH, prepare
    from kdlens.run import load_run
    from kdlens.train import fit

    folder = RunFolder(run, write=False)
    cfg = load_config(folder.config)
    ctx = prepare(cfg, scratch / "probe", overwrite=True)  # writes nothing
    out = {}
    t_cfg = cfg.teacher.train.model_copy(update={"epochs": 1})
    s_cfg = cfg.student.train.model_copy(update={"epochs": 1})
    val = ctx.eval_loader("val")
    teacher_rows = ctx.train_loader(t_cfg, cfg.seed, ctx.teacher_data, ctx.teacher_index)
    d = Distiller(ctx.build(cfg.teacher))
    _, w, p = _timed(fit, d, teacher_rows, val, t_cfg)
    out["teacher"] = {"wall": w, "cpu": p, "epochs": cfg.teacher.train.epochs}

    def student_rows():
        return ctx.train_loader(s_cfg, cfg.seed + 1, ctx.student_data, ctx.student_index)

    d = Distiller(ctx.build(cfg.student))
    _, w, p = _timed(fit, d, student_rows(), val, s_cfg)
    out["scratch"] = {"wall": w, "cpu": p, "epochs": cfg.student.train.epochs}
    teacher = load_run(run).load_model("teacher").to(ctx.device)
    d = build_distiller(
        cfg.distill,
        ctx.build(cfg.student),
        teacher,
        ctx.dataset.input_shape,
        num_examples=len(ctx.student_data[1]),
    )
    w0, p0 = time.perf_counter(), time.process_time()
    if cfg.distill.cache_teacher_logits and not is_augmenting(s_cfg.augment):
        x, y = ctx.student_data
        loader = BatchLoader(
            x, y, ctx.normalizer, EVAL_BATCH, device=ctx.device, source_index=ctx.student_index
        )
        d.set_teacher_cache(compute_logits(teacher, loader))
    cache_w, cache_p = time.perf_counter() - w0, time.process_time() - p0
    _, w, p = _timed(fit, d, student_rows(), val, s_cfg)
    out["kd"] = {
        "wall": w,
        "cpu": p,
        "epochs": cfg.student.train.epochs,
        "cache": [cache_w, cache_p],
    }
    return out


def projected_training(costs: dict[str, dict[str, float]], m: str) -> float:
    total = sum(c[m] * c["epochs"] for c in costs.values())
    return total + costs["kd"]["cache"][0 if m == "wall" else 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--probe-epochs", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--scratch", default="/tmp/kdlens-explain-bench")
    ap.add_argument("--out", default=None, help="default: benchmarks/results/explain_cost*.json")
    ap.add_argument("--quick", action="store_true", help="one pass (checks that the script runs)")
    args = ap.parse_args()
    if args.quick:
        args.repeats = 1
    if args.threads:
        # One thread: CPU seconds then count work, not the spinning of threads waiting for a core.
        torch.set_num_threads(args.threads)
    run, scratch = Path(args.run_dir), Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    passes, probes = [], []
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        passes.append(one_pass(run, scratch))
        if args.probe_epochs:
            probes.append(epoch_costs(run, scratch))
    median = {
        k: {
            m: (statistics.median(p[k][m] for p in passes) if passes[0][k][m] is not None else None)
            for m in ("wall", "cpu")
        }
        for k in passes[0]
    }
    top = [k for k in median if not k.startswith(" ") and not k.startswith("load")]
    explain_wall = sum(median[k]["wall"] for k in top)
    explain_cpu = sum(median[k]["cpu"] for k in top)
    metrics = read_json(RunFolder(run, write=False).metrics)
    t = metrics["timings"]
    in_run = t.get("explain", 0.0) + t.get("report", 0.0)
    result = {
        "run_dir": str(run),
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "parts_median_seconds": median,
        "explain_total_median": {"wall": explain_wall, "cpu": explain_cpu},
        "run_timings": t,
        "in_run_share_of_rest_wall": in_run / (t["total"] - in_run),
    }
    if probes:
        projected = {
            m: statistics.median(projected_training(c, m) for c in probes) for m in ("wall", "cpu")
        }
        result["epoch_probes"] = probes
        result["projected_training"] = projected
        result["share_of_training"] = {
            "wall": explain_wall / projected["wall"],
            "cpu": explain_cpu / projected["cpu"],
        }
    suffix = f"_{args.threads}thread" if args.threads else ""
    out = Path(args.out or Path(__file__).parent / "results" / f"explain_cost{suffix}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'part':<42}{'wall s':>9}{'cpu s':>9}")
    for k, v in median.items():
        cpu = "" if v["cpu"] is None else f"{v['cpu']:9.2f}"
        print(f"{k:<42}{v['wall']:9.2f}{cpu}")
    print(json.dumps({k: v for k, v in result.items() if k != "parts_median_seconds"}, indent=2))


if __name__ == "__main__":
    main()
