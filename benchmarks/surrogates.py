"""Transparent surrogates (decision trees, L1 logistic regression) fitted to a teacher: fidelity of
the distilled surrogate (teacher soft targets as weighted rows) vs its hard-label twin, at each
depth / L1 strength, mean ± std over seeds (each seed: its own split and teacher).

Tabular data use a scikit-learn gradient-boosting teacher (any estimator with predict_proba);
mnist5k uses the CNN teachers saved by ``benchmarks/soft_tree_mnist.py`` (``--mnist-runs``).

    python benchmarks/surrogates.py --datasets breast_cancer wine --seeds 0 1 2 \
        --out benchmarks/results/surrogates_tabular.json
    python benchmarks/surrogates.py --datasets mnist5k --seeds 0 1 2 \
        --mnist-runs /tmp/bench_st/teachers/seed0 /tmp/bench_st_s1/teachers/seed1 \
        /tmp/bench_st_s2/teachers/seed2 --out benchmarks/results/surrogates_mnist5k.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from kdlens.config import load_config
from kdlens.data import Normalizer, Split, create_dataset, make_split
from kdlens.evaluate.metrics import accuracy, fidelity
from kdlens.models import create_model
from kdlens.readable import (
    TransferSet,
    augmented_copies,
    features_for,
    fit_pair,
    teacher_probabilities,
)
from kdlens.run import RunFolder
from kdlens.weights import load_weights

DEPTHS = [1, 2, 3, 4, 6, 8, 10, 12]
CS = [0.003, 0.01, 0.03, 0.1, 1.0]


def tabular_setup(name: str, seed: int):
    from sklearn.ensemble import GradientBoostingClassifier

    ds = create_dataset(name)
    split = make_split(ds, 0.1, 0.2, seed)
    x_train, y_train = ds.x[split.train], ds.y[split.train]
    teacher = GradientBoostingClassifier(random_state=seed).fit(x_train.numpy(), y_train.numpy())
    return ds, split, teacher


def mnist_setup(run_dir: Path):
    folder = RunFolder(run_dir, write=False)
    config = load_config(folder.config)
    ds = create_dataset(config.data.name)
    split = Split.load(folder.split)
    teacher = create_model(config.teacher.model, ds.input_shape, 10, **config.teacher.model_args)
    load_weights(teacher, folder.weights("teacher"))
    return ds, split, teacher.eval()


def arrays(ds, idx, normalizer, teacher):
    x = ds.x[torch.as_tensor(idx)]
    norm = normalizer(x)
    raw_np, norm_np = x.flatten(1).numpy(), norm.flatten(1).numpy()
    probs = teacher_probabilities(teacher, norm, raw_np)
    return raw_np, norm_np, ds.y[torch.as_tensor(idx)], probs


def one_seed(ds, split, teacher, seed: int, depths, cs, copies: int) -> dict:
    normalizer = Normalizer.fit(ds.x[torch.as_tensor(split.train)])
    raw, norm, y, probs = arrays(ds, split.train, normalizer, teacher)
    labels = y.numpy()
    if copies:  # the teacher labels perturbed copies; only the distilled surrogate sees them
        x_aug = augmented_copies(ds.x[torch.as_tensor(split.train)], copies, 2, normalizer, seed)
        n_aug = normalizer(x_aug)
        a_raw, a_norm = x_aug.flatten(1).numpy(), n_aug.flatten(1).numpy()
        a_probs = teacher_probabilities(teacher, n_aug, a_raw)
        raw, norm = np.concatenate([raw, a_raw]), np.concatenate([norm, a_norm])
        probs = np.concatenate([probs, a_probs])
        labels = np.concatenate([labels, np.full(len(a_raw), -1)])
    transfer = TransferSet(raw, norm, labels, probs)
    t_raw, t_norm, t_y, t_probs = arrays(ds, split.test, normalizer, teacher)
    t_logits = torch.as_tensor(np.log(np.maximum(t_probs, 1e-12)))
    out = {"teacher_accuracy": accuracy(t_logits, t_y)}
    for family, values in (("tree", depths), ("logistic", cs)):
        if not values:
            continue
        curve = {"values": values}
        for value in values:
            start = time.perf_counter()
            pair = fit_pair(family, transfer, value, 1.0, seed)
            for arm, fitted in zip(("kd", "scratch"), pair, strict=True):
                x = features_for(fitted, t_raw, t_norm)
                logits = torch.as_tensor(fitted.logits(x, ds.num_classes), dtype=torch.float32)
                curve.setdefault(arm, {"fidelity": [], "accuracy": []})
                curve[arm]["fidelity"].append(fidelity(logits, t_logits))
                curve[arm]["accuracy"].append(accuracy(logits, t_y))
            print(f"  {family} {value}: {time.perf_counter() - start:.1f}s", flush=True)
        out[family] = curve
    return out


def summarise(per_seed: list[dict]) -> dict:
    def ms(values):
        return [statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0]

    first = per_seed[0]
    summary = {"teacher_accuracy": ms([r["teacher_accuracy"] for r in per_seed])}
    for family in ("tree", "logistic"):
        if family not in first:
            continue
        summary[family] = {"values": first[family]["values"]}
        for arm in ("kd", "scratch"):
            for metric in ("fidelity", "accuracy"):
                cols = zip(*[r[family][arm][metric] for r in per_seed], strict=True)
                summary[family][f"{arm}_{metric}"] = [ms(list(c)) for c in cols]
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["breast_cancer", "wine"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mnist-runs", nargs="*", default=[], help="run folders, one per seed")
    parser.add_argument("--depths", type=int, nargs="+", default=DEPTHS)
    parser.add_argument("--cs", type=float, nargs="*", default=CS, help="none: skip logistic")
    parser.add_argument("--out", default="benchmarks/results/surrogates.json")
    parser.add_argument(
        "--augmented-copies", type=int, default=0, help="teacher-labelled perturbed copies"
    )
    args = parser.parse_args()
    results = {}
    for name in args.datasets:
        per_seed = []
        for i, seed in enumerate(args.seeds):
            print(name, seed, flush=True)
            if name == "mnist5k":
                ds, split, teacher = mnist_setup(Path(args.mnist_runs[i]))
            else:
                ds, split, teacher = tabular_setup(name, seed)
            per_seed.append(
                one_seed(ds, split, teacher, seed, args.depths, args.cs, args.augmented_copies)
            )
        results[name] = {"summary": summarise(per_seed), "per_seed": per_seed}
        Path(args.out).write_text(json.dumps(results, indent=2))
    for name, r in results.items():
        s = r["summary"]
        t = s["teacher_accuracy"]
        print(f"\n{name} (teacher accuracy {100 * t[0]:.1f} ± {100 * t[1]:.1f})")
        for family, label in (("tree", "depth"), ("logistic", "C")):
            if family not in s:
                continue
            print(
                f"| {label} | fidelity distilled | fidelity hard labels | acc. distilled | acc. hard |"
            )
            print("|---|---|---|---|---|")
            for j, v in enumerate(s[family]["values"]):
                cells = [
                    s[family][k][j]
                    for k in ("kd_fidelity", "scratch_fidelity", "kd_accuracy", "scratch_accuracy")
                ]
                print(
                    f"| {v} | "
                    + " | ".join(f"{100 * m:.1f} ± {100 * sd:.1f}" for m, sd in cells)
                    + " |"
                )


if __name__ == "__main__":
    main()
