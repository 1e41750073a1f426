"""Does the KD fine-tune after pruning lose to a hard-label fine-tune only at the run's KD
settings (T=20, alpha=0)? Re-prunes the distilled student of finished benchmark runs and
fine-tunes it with other temperatures / hard-label weights.

    PYTHONPATH=src python benchmarks/deploy_kd_finetune_variants.py runs/bench_deploy/seed1

Reads the run's trained teacher and students (nothing is retrained); writes
benchmarks/results/deploy_kd_finetune_variants_<run folder name>.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kdlens.config import load_config
from kdlens.deploy.stage import _pruned_student
from kdlens.evaluate import accuracy, fidelity
from kdlens.pipeline import evaluate_models, prepare
from kdlens.run import load_run

VARIANTS = {"T4_alpha0.5": (4.0, 0.5), "T4_alpha0": (4.0, 0.0), "T20_alpha0.5": (20.0, 0.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9])
    args = parser.parse_args()
    run_dir = Path(args.run_dir)
    trained = load_run(run_dir)
    x = trained.normalizer(trained.tensors("test")[0])
    y = trained.tensors("test")[1]
    base = trained.metrics["models"]
    results = {"run": str(run_dir), "rows": []}
    for name, (temperature, alpha) in VARIANTS.items():
        config = load_config(
            run_dir / "config.yaml",
            [
                f"distill.temperature={temperature}",
                f"distill.alpha={alpha}",
                "deploy.quantize=false",
            ],
        )
        # prepare() only reads data and checks models; the run folder is not rewritten.
        ctx = prepare(config, run_dir, overwrite=True)
        ctx.models = {n: trained.load_model(n) for n in ("teacher", "scratch", "kd")}
        evaluate_models(ctx)
        for s in args.sparsities:
            model, _ = _pruned_student(ctx, s, "unstructured", "kd")
            logits = model(x).detach()
            pct = f"{100 * s:g}"
            row = {
                "variant": name,
                "sparsity": s,
                "accuracy": accuracy(logits, y),
                "fidelity": fidelity(logits, ctx.test_logits["teacher"]),
                "run_kd_T20_alpha0_accuracy": base[f"kd_pruned{pct}"]["accuracy"],
                "run_hard_accuracy": base[f"kd_pruned{pct}_hard"]["accuracy"],
            }
            row["minus_hard_points"] = 100 * (row["accuracy"] - row["run_hard_accuracy"])
            results["rows"].append(row)
            print(json.dumps(row), flush=True)
    out = Path("benchmarks/results") / f"deploy_kd_finetune_variants_{run_dir.name}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
