"""Issue 6 benchmark: distillation methods, the omitted class and adaptive alpha on mnist5k.

Per seed: one teacher and one scratch student, then one distilled student per variant, all with
the pipeline's own functions (the same initialisation and batch order as ``kdlens run``), so the
variants differ only in how they distill. Results go to benchmarks/results/distill_methods.json
after every student (one file per seed, merged by ``--summarize``), and a rerun skips what is
already there, reusing the seed's teacher checkpoint. Seeds may run in parallel processes:

    for s in 0 1 2; do PYTHONPATH=src python benchmarks/distill_methods.py --seed $s & done; wait
    PYTHONPATH=src python benchmarks/distill_methods.py --summarize
    (add --config benchmarks/configs/<other>.yaml to both for another setting)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from kdlens.config import load_config
from kdlens.data import BatchLoader, is_augmenting
from kdlens.distill import Distiller, build_distiller, compute_logits
from kdlens.distill.transfer import student_tensors
from kdlens.evaluate import classification_metrics
from kdlens.evaluate.omitted import omitted_class_report
from kdlens.pipeline import EVAL_BATCH, prepare, train_teacher
from kdlens.train import fit
from kdlens.utils import set_seed, write_json

ROOT = Path(__file__).resolve().parent
CONFIG = ROOT / "configs" / "mnist5k_methods.yaml"


def results_file(config: Path, seed: int | None = None) -> Path:
    """results/distill_methods[_<config>][_seed<s>].json; the default config has no infix."""
    infix = "" if config == CONFIG else f"_{config.stem}"
    suffix = "" if seed is None else f"_seed{seed}"
    return ROOT / "results" / f"distill_methods{infix}{suffix}.json"


VARIANTS: dict[str, list[str]] = {
    "kd": ["distill.method=kd"],
    "fitnets": ["distill.method=fitnets"],
    "at": ["distill.method=at"],
    "dkd": ["distill.method=dkd"],
    "rkd": ["distill.method=rkd"],
    # the omitted-class experiment: no 3s in the transfer set
    "kd_omit3": ["distill.exclude_classes=[3]"],
    # adaptive weighting, against "kd" (constant alpha = 0.1)
    "kd_alpha_linear": ["distill.alpha_schedule={kind: linear, end: 0.5}"],
    "kd_confidence": ["distill.example_weighting=confidence"],
    "scratch_omit3": ["distill.exclude_classes=[3]"],
}


def _student(ctx, name: str, overrides: list[str], seed: int) -> dict:
    config = load_config(ctx.bench_config, [f"seed={seed}", *overrides])
    ctx.config = config
    cfg, student_seed = config.student.train, seed + 1
    data = student_tensors(ctx)
    set_seed(student_seed)
    student = ctx.build(config.student)
    if name.startswith("scratch"):
        distiller = Distiller(student)
    else:
        distiller = build_distiller(
            config.distill,
            student,
            ctx.models["teacher"],
            ctx.dataset.input_shape,
            num_examples=len(data[1]),
        )
        if config.distill.cache_teacher_logits and not is_augmenting(cfg.augment):
            loader = BatchLoader(*data, ctx.normalizer, EVAL_BATCH, device=ctx.device)
            distiller.set_teacher_cache(compute_logits(ctx.models["teacher"], loader))
    start = time.perf_counter()
    fit(distiller, ctx.train_loader(cfg, student_seed, data), ctx.eval_loader("val"), cfg)
    seconds = time.perf_counter() - start
    test = ctx.eval_loader("test")
    logits = compute_logits(distiller.student, test)
    teacher_logits = compute_logits(ctx.models["teacher"], test)
    out = classification_metrics(logits, test.y, teacher_logits)
    out["train_seconds"] = seconds
    if config.distill.exclude_classes:
        val = ctx.eval_loader("val")
        out["omitted"] = omitted_class_report(
            logits,
            test.y,
            compute_logits(distiller.student, val),
            val.y,
            config.distill.exclude_classes,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, help="run this seed")
    parser.add_argument("--summarize", action="store_true", help="merge the seeds' files")
    parser.add_argument("--out", default="runs/bench_issue6")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--table", action="store_true", help="print the summary as Markdown")
    args = parser.parse_args()
    config = args.config.resolve()
    if args.seed is not None:
        torch.set_num_threads(args.threads)
        run_seed(config, args.seed, Path(args.out) / config.stem)
    if args.summarize:
        files = sorted(results_file(config).parent.glob(results_file(config, 0).name[:-6] + "*"))
        runs = {f.stem.rsplit("seed", 1)[1]: json.loads(f.read_text()) for f in files}
        write_json(
            results_file(config),
            {
                "config": str(config.relative_to(ROOT.parent)),
                "variants": VARIANTS,
                "summary": summarize(runs),
                "runs": runs,
            },
        )
    if args.table:
        print(table(json.loads(results_file(config).read_text())["summary"]))


def table(summary: dict) -> str:
    """Markdown rows: accuracy and fidelity (and the omitted-class numbers) per variant, in %."""

    def cell(m: dict, key: str) -> str:
        if key not in m:
            return "–"
        return f"{100 * m[key]['mean']:.1f} ± {100 * m[key]['std']:.1f}"

    lines = [
        "| variant | seeds | test accuracy % | fidelity % | omitted-class recall % (before → after bias) | accuracy after bias % |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in summary.items():
        omitted = (
            f"{cell(m, 'omitted.omitted_recall')} → {cell(m, 'omitted.omitted_recall_corrected')}"
            if "omitted.omitted_recall" in m
            else "–"
        )
        lines.append(
            f"| {name} | {m['seeds']} | {cell(m, 'accuracy')} | {cell(m, 'fidelity')} | {omitted} "
            f"| {cell(m, 'omitted.accuracy_corrected')} |"
        )
    return "\n".join(lines)


def run_seed(config_path: Path, seed: int, out: Path) -> None:
    path = results_file(config_path, seed)
    runs = json.loads(path.read_text()) if path.is_file() else {}
    if all(n in runs for n in ["teacher", "scratch", *VARIANTS]):
        return
    folder = out / f"seed{seed}"
    checkpoint = folder / "checkpoints" / "teacher.safetensors"
    reuse = [f"teacher.checkpoint={checkpoint}"] if checkpoint.is_file() else []
    ctx = prepare(load_config(config_path, [f"seed={seed}", *reuse]), folder, True)
    ctx.bench_config = config_path
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    set_seed(seed)
    train_teacher(ctx)  # saves the checkpoint, or re-saves the loaded one
    test = ctx.eval_loader("test")
    runs["teacher"] = classification_metrics(compute_logits(ctx.models["teacher"], test), test.y)
    for name in ["scratch", *VARIANTS]:
        if name in runs:
            continue
        runs[name] = _student(ctx, name, [] if name == "scratch" else VARIANTS[name], seed)
        runs[name]["torch_threads"] = torch.get_num_threads()
        print(f"seed {seed} {name}: {runs[name]['accuracy']:.4f}", flush=True)
        write_json(path, runs)


def summarize(runs: dict) -> dict:
    """Mean and sample std over seeds of every numeric metric of every variant."""
    names = dict.fromkeys(n for seed in runs.values() for n in seed)
    out = {}
    for name in names:
        per_seed = [seed[name] for seed in runs.values() if name in seed]
        flat = [_flatten(m) for m in per_seed]
        keys = [k for k in flat[0] if all(k in f and f[k] is not None for f in flat)]
        out[name] = {"seeds": len(flat)}
        for k in keys:
            values = [f[k] for f in flat]
            out[name][k] = {
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            }
    return out


def _flatten(m: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in m.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float)):
            flat[prefix + k] = v
    return flat


if __name__ == "__main__":
    main()
