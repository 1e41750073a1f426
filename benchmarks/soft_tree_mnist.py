"""Soft decision tree (Frosst & Hinton 2017) of depth 8 on mnist5k: distilled vs hard labels.

One CNN teacher (the default run's, trained once and passed with ``--teacher-run``: a run folder
with its config, split and teacher weights) and its split; for each recipe and each tree seed, a
hard-label tree and its distilled twin with the same initialisation and batch order, trained by
the library's ``train_soft_trees`` (Distiller + ``train_stage``, in a temporary run folder). The
library seeds the trees with the run's seed + 11; the benchmark sets the run's seed so that the
tree seed is the one given. Both predictions are reported: the mixture of leaves and the most
probable path.

    python benchmarks/soft_tree_mnist.py --teacher-run /tmp/bench_st/teachers/seed0 \
        --seeds 0 1 2 --recipes probe t4 t4_aug --out benchmarks/results/soft_tree_mnist.json

(the teacher run: ``kdlens run --out /tmp/bench_st/teachers/seed0 --set student.train.epochs=1``
or any default run folder.) Prints a Markdown table (mean ± std over tree seeds).
``--quick``: one recipe, one seed, depth 3, one epoch of 5 batches (checks that the script runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kdlens.config import AugmentConfig, ModelSpec, ReadableConfig, TrainConfig, load_config
from kdlens.data import Split
from kdlens.distill import compute_logits
from kdlens.evaluate.metrics import accuracy, fidelity
from kdlens.pipeline import prepare
from kdlens.run import RunFolder
from kdlens.stages.readable import train_soft_trees

TREE_SEED_OFFSET = 11  # train_soft_trees seeds the trees with the run's seed + 11

# recipe -> (temperature, alpha, augment shift, lr, epochs[, balance penalty])
RECIPES: dict[str, tuple] = {
    "probe": (1.0, 0.0, 0, 0.01, 30),  # the failed probe
    "t4": (4.0, 0.0, 0, 0.01, 30),  # T on the leaf logits, not the log-mixture
    "t4_aug": (4.0, 0.0, 2, 0.01, 30),  # + teacher-labelled shifted images (both twins shifted)
    "t1_aug": (1.0, 0.0, 2, 0.01, 30),
    "t20": (20.0, 0.0, 0, 0.01, 30),
    "t4_pen": (4.0, 0.0, 0, 0.01, 30, 1.6),  # penalty scaled by T^2 like the soft term
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher-run", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=["probe", "t4", "t4_aug"])
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/soft_tree_mnist.json")
    parser.add_argument("--quick", action="store_true", help="tiny settings: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.recipes, args.depth = args.seeds[:1], args.recipes[:1], 3
    teacher_run = RunFolder(args.teacher_run, write=False)
    base = load_config(teacher_run.config)
    config = load_config(
        teacher_run.config, [f"teacher.checkpoint={teacher_run.weights('teacher')}"]
    )
    tmp = tempfile.TemporaryDirectory()  # the trees' training stages write here
    ctx = prepare(config, Path(tmp.name) / "run")
    ctx.folder.make_dirs()
    assert ctx.split.test == Split.load(teacher_run.split).test, "the teacher's split must match"
    test_loader = ctx.eval_loader("test")
    t_logits = compute_logits(ctx.models["teacher"], test_loader)
    y = test_loader.y
    results: dict = {
        "teacher_accuracy": accuracy(t_logits, y),
        "teacher_seed": base.seed,
        "depth": args.depth,
        "recipes": {},
    }
    for recipe in args.recipes:
        t, alpha, shift, lr, epochs, *rest = RECIPES[recipe]
        penalty = rest[0] if rest else 0.1
        train = TrainConfig(epochs=epochs, lr=lr, augment=AugmentConfig(shift=shift))
        if args.quick:
            train = train.model_copy(update={"epochs": 1, "max_batches": 5})
        model_args = {"depth": args.depth, "penalty": penalty}
        spec = ModelSpec(model="soft_tree", model_args=model_args, train=train)
        cfg = ReadableConfig(soft_tree=spec, temperature=t, alpha=alpha)
        rows: dict = {}
        for seed in args.seeds:
            start = time.perf_counter()
            ctx.config = config.model_copy(update={"seed": seed - TREE_SEED_OFFSET})
            trees = train_soft_trees(ctx, cfg, spec.model_args, record=False)
            for arm, model in trees.items():
                logits = compute_logits(model, test_loader)
                path = torch.cat([model.path_predict(b.x).cpu() for b in test_loader])
                r = rows.setdefault(arm.removeprefix("soft_tree_"), {})
                for key, value in (
                    ("accuracy", accuracy(logits, y)),
                    ("fidelity", fidelity(logits, t_logits)),
                    ("path_accuracy", accuracy(path, y)),
                    ("path_fidelity", fidelity(path, t_logits)),
                ):
                    r.setdefault(key, []).append(value)
            print(recipe, seed, f"{time.perf_counter() - start:.0f}s",
                  {a: round(r["accuracy"][-1], 4) for a, r in rows.items()}, flush=True)  # fmt: skip
        results["recipes"][recipe] = {
            "temperature": t, "alpha": alpha, "shift": shift, "lr": lr, "epochs": epochs,
            "penalty": penalty, **rows
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(results, indent=2))
    tmp.cleanup()
    print(f"teacher accuracy {100 * results['teacher_accuracy']:.2f}")
    print("| recipe | hard (mixture) | distilled (mixture) | hard (path) | distilled (path) |")
    print("|---|---|---|---|---|")
    for recipe, r in results["recipes"].items():
        cells = [ms(r["scratch"]["accuracy"]), ms(r["kd"]["accuracy"])]
        cells += [ms(r["scratch"]["path_accuracy"]), ms(r["kd"]["path_accuracy"])]
        print(f"| {recipe} | " + " | ".join(cells) + " |")


def ms(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * sd:.2f}"


if __name__ == "__main__":
    main()
