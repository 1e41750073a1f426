"""Does the KD fine-tune after pruning lose to a hard-label fine-tune only at the run's KD
settings (T=20, alpha=0)? Re-prunes the distilled student of finished benchmark runs and
fine-tunes it with other temperatures / hard-label weights.

    PYTHONPATH=src python benchmarks/deploy_kd_finetune_variants.py runs/bench_deploy/seed1

Reads the run's trained teacher and distilled student (nothing is retrained, the run folder is
not written) and fine-tunes as the deploy stage does (``kdlens.stages.deploy``: the run's
``deploy.finetune_epochs`` and ``deploy.finetune_lr``, seed + 2, the run's transfer set), with
``fit`` in memory; writes benchmarks/results/deploy_kd_finetune_variants_<run folder name>.json.
``--quick``: one variant, one sparsity, one fine-tune epoch (checks that the script runs).
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import torch

from kdlens.config import load_config
from kdlens.deploy import make_permanent, prune_model
from kdlens.distill import build_distiller
from kdlens.evaluate import accuracy, fidelity
from kdlens.pipeline import prepare
from kdlens.run import load_run, select
from kdlens.train import fit
from kdlens.utils import set_seed

VARIANTS = {"T4_alpha0.5": (4.0, 0.5), "T4_alpha0": (4.0, 0.0), "T20_alpha0.5": (20.0, 0.5)}


def pct(s: float) -> str:
    """The deploy stage's name part for a sparsity: 0.8 -> ``80``, 0.995 -> ``99p5``."""
    return f"{100 * s:g}".replace(".", "p")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9])
    parser.add_argument("--out", default=None, help="default: benchmarks/results/...")
    parser.add_argument("--quick", action="store_true", help="one variant, one sparsity, 1 epoch")
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    trained = load_run(run_dir, need_metrics=True)
    student = select(trained.records, role="student", trained_with="teacher")[0]
    x = trained.normalizer(trained.tensors("test")[0])
    y = trained.tensors("test")[1]
    base = trained.metrics["models"]
    teacher = trained.load_model("teacher")
    with torch.no_grad():
        teacher_logits = teacher(x)
    variants = dict(list(VARIANTS.items())[:1]) if args.quick else VARIANTS
    sparsities = args.sparsities[:1] if args.quick else args.sparsities
    results = {"run": str(run_dir), "rows": []}
    for name, (temperature, alpha) in variants.items():
        overrides = [f"distill.temperature={temperature}", f"distill.alpha={alpha}"]
        if args.quick:
            overrides.append("deploy.finetune_epochs=1")
        config = load_config(trained.folder.config, overrides)
        with tempfile.TemporaryDirectory() as tmp:  # prepare() writes nothing; the run's data
            ctx = prepare(config, Path(tmp) / "never-written")
        for s in sparsities:
            model = prune_model(copy.deepcopy(trained.load_model(student)), s, "unstructured")
            train_cfg = config.student.train.model_copy(
                update={"epochs": config.deploy.finetune_epochs, "lr": config.deploy.finetune_lr}
            )
            seed = config.seed + 2  # as the deploy stage: the same batches as the run's fine-tunes
            set_seed(seed)
            distiller = build_distiller(
                config.distill,
                model,
                teacher,
                ctx.dataset.input_shape,
                num_examples=len(ctx.student_data[1]),
            )
            loader = ctx.train_loader(train_cfg, seed, ctx.student_data, ctx.student_index)
            fit(distiller, loader, ctx.eval_loader("val"), train_cfg)
            with torch.no_grad():
                logits = make_permanent(model).eval()(x)
            row = {
                "variant": name,
                "sparsity": s,
                "accuracy": accuracy(logits, y),
                "fidelity": fidelity(logits, teacher_logits),
                "run_kd_accuracy": base[f"{student}_pruned{pct(s)}"]["accuracy"],
                "run_hard_accuracy": base[f"{student}_pruned{pct(s)}_hard"]["accuracy"],
                "run_distill": {
                    "temperature": trained.config.distill.temperature,
                    "alpha": trained.config.distill.alpha,
                },
            }
            row["minus_hard_points"] = 100 * (row["accuracy"] - row["run_hard_accuracy"])
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    default = Path("benchmarks/results") / f"deploy_kd_finetune_variants_{run_dir.name}.json"
    out = Path(args.out) if args.out else default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
