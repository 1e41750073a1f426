"""Soft decision tree (Frosst & Hinton 2017) on mnist5k: distilled vs hard labels, several recipes.

For each seed the default CNN teacher is trained once; then each recipe runs the pipeline with
``student.model=soft_tree`` (so "scratch" is the hard-label tree and "kd" its distilled twin, same
initialisation and batch order), reusing that teacher. Both predictions are reported: the mixture
of leaves and the most probable path.

    python benchmarks/soft_tree_mnist.py --seeds 0 1 2 --recipes probe t4 t4_aug \
        --out benchmarks/results/soft_tree_mnist

Writes ``summary.json`` to ``--out`` and prints a Markdown table (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

from kdlens.checkpoints import load_weights
from kdlens.config import load_config
from kdlens.data import BatchLoader, Normalizer, Split, create_dataset
from kdlens.evaluate.metrics import accuracy, fidelity
from kdlens.models import create_model
from kdlens.pipeline import run

TREE = [
    "student.model=soft_tree",
    "student.model_args={depth: 8, penalty: 0.1}",
    "student.train.lr=0.01",
    "student.train.epochs=30",
    "readable.students=[]",
    "readable.sweeps=[]",
]
# Each recipe: overrides on top of TREE. "scratch" always gets the same data as "kd".
RECIPES: dict[str, list[str]] = {
    "probe": ["distill.temperature=1", "distill.alpha=0"],  # the failed probe
    "t4": ["distill.temperature=4", "distill.alpha=0"],
    "t2": ["distill.temperature=2", "distill.alpha=0"],
    "t4_aug": ["distill.temperature=4", "distill.alpha=0", "student.train.augment.shift=2"],
    "t1_aug": ["distill.temperature=1", "distill.alpha=0", "student.train.augment.shift=2"],
    "t4_aug_a05": ["distill.temperature=4", "distill.alpha=0.5", "student.train.augment.shift=2"],
    "t4_aug_lr3": [
        "distill.temperature=4",
        "distill.alpha=0",
        "student.train.augment.shift=2",
        "student.train.lr=0.003",
    ],
    "t4_aug_long": [
        "distill.temperature=4",
        "distill.alpha=0",
        "student.train.augment.shift=2",
        "student.train.epochs=60",
    ],
}


def path_metrics(run_dir: Path, seed: int) -> dict[str, dict[str, float]]:
    """Most-probable-path accuracy and fidelity of the two trees saved in ``run_dir``."""
    config = load_config(run_dir / "config.yaml")
    ds = create_dataset(config.data.name)
    split = Split.load(run_dir / "split.json")
    norm = Normalizer.fit(ds.x[torch.as_tensor(split.train)])
    test = torch.as_tensor(split.test)
    x, y = norm(ds.x[test]), ds.y[test]
    teacher = create_model(config.teacher.model, ds.input_shape, 10, **config.teacher.model_args)
    load_weights(teacher, run_dir / "checkpoints" / "teacher.safetensors")
    with torch.no_grad():
        t_logits = torch.cat([teacher.eval()(b.x) for b in BatchLoader(x, y, _identity, 512)])
    out = {}
    for name in ("scratch", "kd"):
        tree = create_model("soft_tree", ds.input_shape, 10, **config.student.model_args)
        load_weights(tree, run_dir / "checkpoints" / f"{name}.safetensors")
        logits = tree.eval().path_predict(x)
        out[name] = {
            "path_accuracy": accuracy(logits, y),
            "path_fidelity": fidelity(logits, t_logits),
        }
    return out


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.fmean(values):.2f} ± {100 * sd:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--recipes", nargs="+", default=["probe", "t4", "t4_aug"])
    parser.add_argument("--out", default="benchmarks/results/soft_tree_mnist")
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    args = parser.parse_args()
    out = Path(args.out)
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    for seed in args.seeds:
        teacher = out / "teachers" / f"seed{seed}" / "checkpoints" / "teacher.safetensors"
        for recipe in args.recipes:
            overrides = [*TREE, *RECIPES[recipe], *args.set, f"seed={seed}"]
            if teacher.is_file():
                overrides.append(f"teacher.checkpoint={teacher}")
                folder = out / recipe / f"seed{seed}"
            else:  # the first recipe of a seed trains (and keeps) its teacher
                folder = out / "teachers" / f"seed{seed}"
            metrics = run(load_config(None, overrides), folder, overwrite=True)
            paths = path_metrics(folder, seed)
            arms = results.setdefault(recipe, {})
            for arm in ("teacher", "scratch", "kd"):
                m = dict(metrics["models"][arm])
                m.update(paths.get(arm, {}))
                for key in ("accuracy", "fidelity", "path_accuracy", "path_fidelity"):
                    if key in m:
                        arms.setdefault(arm, {}).setdefault(key, []).append(m[key])
            (out / "summary.json").write_text(
                json.dumps({"recipes": RECIPES, "results": results}, indent=2)
            )
            print(
                recipe,
                seed,
                {a: round(metrics["models"][a]["accuracy"], 4) for a in ("scratch", "kd")},
                flush=True,
            )
    print(
        "| recipe | teacher | hard labels (mixture) | distilled (mixture) | hard (path) | distilled (path) |"
    )
    print("|---|---|---|---|---|---|")
    for recipe, arms in results.items():
        cells = [
            mean_std(arms["teacher"]["accuracy"]),
            mean_std(arms["scratch"]["accuracy"]),
            mean_std(arms["kd"]["accuracy"]),
            mean_std(arms["scratch"]["path_accuracy"]),
            mean_std(arms["kd"]["path_accuracy"]),
        ]
        print(f"| {recipe} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
