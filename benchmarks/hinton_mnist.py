"""Hinton et al. (2015) MNIST experiment at our scale: the default `kdlens run` over several seeds.

For each seed it runs the default config (teacher -> scratch student -> distilled student) and then,
reusing that seed's teacher, the same two students trained with the teacher's augmentation (the honest
second baseline: does distillation still win when scratch training sees augmented data too?).

    python benchmarks/hinton_mnist.py --seeds 0 1 2 --out benchmarks/results/hinton_mnist
    python benchmarks/hinton_mnist.py --quick --out /tmp/hinton   # configs/smoke.yaml, seed 0

Without ``--config`` the runs use the shipped recipe (``configs/default.yaml``), as ``kdlens run``.

Prints a Markdown table (mean ± std over seeds) and writes ``summary.json`` to ``--out``. Seeds can run
in separate processes (``--seeds 0``, ``--seeds 1``, ...) into one ``--out``; ``--seeds`` with no value
then only aggregates.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from kdlens.config import default_config_path, load_config
from kdlens.pipeline import run
from kdlens.run import RunFolder

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"

KEYS = ("accuracy", "fidelity", "kl_to_teacher", "ece")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _gap_closed(gap: dict | None) -> float | None:
    """The point estimate (kd - scratch) / (teacher - scratch) whenever the gap is positive; the
    run's own ``value`` is null unless the gap is significant (see gap_verdict)."""
    if not gap:
        return None
    return (gap["kd_accuracy"] - gap["scratch_accuracy"]) / gap["gap"] if gap["gap"] > 0 else None


def run_seed(args: argparse.Namespace, seed: int) -> dict:
    """The default arms for one seed, plus the augmented-student arms with the same teacher."""
    out = Path(args.out)
    base = run(
        load_config(args.config, [*args.set, f"seed={seed}"]), out / f"seed{seed}", overwrite=True
    )
    arms = {n: base["models"][n] for n in ("teacher", "scratch", "kd")}
    if not args.no_augmented:
        teacher = RunFolder(out / f"seed{seed}", write=False).weights("teacher")
        overrides = [*args.set, f"seed={seed}", f"teacher.checkpoint={teacher}", *args.aug_set]
        aug = run(load_config(args.config, overrides), out / f"seed{seed}_aug", overwrite=True)
        arms["scratch (augmented)"] = aug["models"]["scratch"]
        arms["kd (augmented)"] = aug["models"]["kd"]
    record = {
        "seed": seed,
        "arms": arms,
        "gap_closed": _gap_closed(base["summary"].get("gap_closed")),
        "gap_verdict": base["summary"].get("gap_closed"),
        "run_seconds": base["timings"]["total"],
        "environment": base["environment"],
    }
    (out / f"result_seed{seed}.json").write_text(json.dumps(record, indent=2))
    return record


def aggregate(out: Path) -> dict:
    records = [json.loads(p.read_text()) for p in sorted(out.glob("result_seed*.json"))]
    rows: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        for name, m in rec["arms"].items():
            for key in KEYS:
                if key in m:
                    rows.setdefault(name, {}).setdefault(key, []).append(m[key])
    gaps = [r["gap_closed"] for r in records if r["gap_closed"] is not None]

    def stats(values: list[float]) -> dict:
        mean, std = mean_std(values)
        return {"mean": mean, "std": std, "values": values}

    return {
        "seeds": [r["seed"] for r in records],
        "models": {n: {k: stats(v) for k, v in r.items()} for n, r in rows.items()},
        "gap_closed": stats(gaps) if gaps else None,
        "run_seconds": {
            "median": statistics.median(r["run_seconds"] for r in records),
            "values": [r["run_seconds"] for r in records],
        },
        "environment": records[0]["environment"] if records else None,
    }


def print_table(summary: dict) -> None:
    print("| model | " + " | ".join(KEYS) + " |")
    print("|---|" + "---|" * len(KEYS))
    for name, r in summary["models"].items():
        cells = []
        for key in KEYS:
            if key in r:
                scale = 100 if key in ("accuracy", "fidelity") else 1
                cells.append(f"{scale * r[key]['mean']:.2f} ± {scale * r[key]['std']:.2f}")
            else:
                cells.append("-")
        print(f"| {name} | " + " | ".join(cells) + " |")
    gap = summary["gap_closed"]
    if gap:
        per_seed = ", ".join(f"{100 * g:.0f}%" for g in gap["values"])
        print(
            f"\ngap closed by kd: {100 * gap['mean']:.0f}% ± {100 * gap['std']:.0f}% (per seed: {per_seed})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--config", default=None, help="YAML config (default: configs/default.yaml, the recipe)"
    )
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--out", default="benchmarks/results/hinton_mnist")
    parser.add_argument("--set", action="append", default=[], help="override for every run")
    parser.add_argument(
        "--aug-set",
        action="append",
        default=["student.train.augment.shift=2"],
        help="overrides of the augmented-student arm",
    )
    parser.add_argument(
        "--no-augmented", action="store_true", help="skip the augmented-student arm"
    )
    parser.add_argument("--quick", action="store_true", help="configs/smoke.yaml, first seed only")
    args = parser.parse_args()
    if args.quick:
        args.config, args.seeds = args.config or SMOKE, args.seeds[:1]
    args.config = args.config or default_config_path()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:  # --seeds with no value only aggregates what earlier runs wrote
        run_seed(args, seed)
    summary = aggregate(Path(args.out))
    (Path(args.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    print_table(summary)


if __name__ == "__main__":
    main()
