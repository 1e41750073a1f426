"""Issue 14 benchmark: every distillation method against scratch on mnist5k, with paired verdicts.

The default recipe (configs/default.yaml: teacher ``cnn`` [32, 64] hidden 1200, 1,500 test images)
with a small CNN student. Per seed: the teacher is trained once (``pipeline.run(only=("teacher",))``)
and loaded by every other run; one run trains ``scratch`` and ``kd`` (the twins); every other method
is one run with ``twins=False``, so scratch is trained once. Every student of a seed has the same
initialisation and batch order (the students stage seeds both alike), so the methods differ only in
how they distill. Each method is judged against that scratch with
:func:`kdlens.evaluate.verdicts.compare` on the same test split (checked example by example).

Results go to benchmarks/results/distill_methods_seed<s>.json after every student, a rerun skips
what is done, and ``--summarize`` merges the seeds into distill_methods.json. Seeds may run in
parallel processes:

    for s in 0 1 2; do PYTHONPATH=src python benchmarks/distill_methods.py --seed $s & done; wait
    PYTHONPATH=src python benchmarks/distill_methods.py --summarize --table
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from kdlens.config import RunConfig, load_config
from kdlens.distill import list_distillers
from kdlens.errors import KdlensError
from kdlens.evaluate.verdicts import (
    HELPED,
    Resampler,
    compare,
    format_p,
    net_wins,
    verdict_across_seeds,
)
from kdlens.pipeline import run
from kdlens.run import RunFolder, load_run
from kdlens.utils import write_json

ROOT = Path(__file__).resolve().parent
RECIPE = ROOT.parent / "configs" / "default.yaml"
RESAMPLES = 10_000  # as the verdicts stage
STAGES = ("teacher", "students", "evaluate", "verdicts")  # verdicts saves the test logits
# The stages after evaluation off, as tests/conftest.py's CORE_ONLY (``only`` skips them too).
CORE_ONLY = [
    "explain.enabled=false",
    "readable.students=[]",
    "readable.sweeps=[]",
    "deploy.quantize=false",
]
# The small CNN student: 2 conv blocks of 8 and 16 channels, hidden 32: 9,826 parameters, 128x fewer than
# the teacher's 1.26 M.
STUDENT = ["student.model=cnn", "student.model_args={channels: [8, 16], hidden: 32}"]
# FitNets and AT have no default layers: the block outputs (after ReLU) of both CNNs, as in the
# issue-6 setting and benchmarks/step_cost.py; every other method keeps its default layers.
LAYERS = [
    "distill.options.fitnets={teacher_layer: features.6, student_layer: features.6}",
    "distill.options.at={teacher_layers: [features.2, features.6], "
    "student_layers: [features.2, features.6]}",
]
TWINS = "kd"  # the run that also trains scratch


def results_file(seed: int | None = None, results: Path = ROOT / "results") -> Path:
    suffix = "" if seed is None else f"_seed{seed}"
    return results / f"distill_methods{suffix}.json"


def seed_config(seed: int, setting: list[str], extra: list[str] = ()) -> RunConfig:
    return load_config(RECIPE, [f"seed={seed}", *setting, *extra])


def ensure_teacher(seed: int, setting: list[str], folder: Path) -> Path:
    """The seed's teacher checkpoint, trained first unless an earlier run finished it."""
    teacher = RunFolder(folder / "teacher")
    if not teacher.done("teacher").is_file():
        run(seed_config(seed, setting), teacher.path, overwrite=True, only=("teacher",))
    return teacher.weights("teacher").resolve()


def test_outputs(path: Path) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """A finished run's test logits by model, test labels and test example ids."""
    reopened = load_run(path, need_metrics=True)
    logits = load_file(str(reopened.folder.test_logits))
    ids = torch.as_tensor(reopened.split.test)
    return logits, reopened.dataset.y[ids], ids


def run_method(method: str, seed: int, setting: list[str], folder: Path, reuse: list[str]) -> dict:
    """Train one distilled student (and scratch for ``kd``); its metrics and train seconds, or the
    one-line refusal when the method cannot train this student."""
    config = seed_config(seed, setting, [*reuse, f"distill.method={method}"])
    try:
        metrics = run(config, folder / method, overwrite=True, only=STAGES, twins=method == TWINS)
    except KdlensError as e:
        return {"refused": str(e)}
    except (RuntimeError, ValueError) as e:  # the method broke while training: that is its result
        return {"failed": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
    out = {"accuracy": metrics["models"]["kd"]["accuracy"]}
    out["fidelity"] = metrics["models"]["kd"].get("fidelity")
    out["train_seconds"] = metrics["timings"]["kd"]
    if method == TWINS:
        for name in ("teacher", "scratch"):
            out[name] = {"accuracy": metrics["models"][name]["accuracy"]}
        out["scratch"]["train_seconds"] = metrics["timings"]["scratch"]
    return out


def judge(method_dir: Path, twins_dir: Path, seed: int) -> dict:
    """``compare()`` of the method's student against the seed's scratch, on the same test split."""
    logits, y, ids = test_outputs(method_dir)
    scratch_logits, scratch_y, scratch_ids = test_outputs(twins_dir)
    if not (torch.equal(ids, scratch_ids) and torch.equal(y, scratch_y)):
        raise RuntimeError(f"{method_dir} and {twins_dir} have different test splits")
    resampler = Resampler(len(y), RESAMPLES, seed)  # the same resamples for every method of a seed
    return compare(y, logits["kd"], scratch_logits["scratch"], resampler=resampler)


def run_seed(
    seed: int, out: Path, setting: list[str], methods: list[str], results_dir: Path
) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_file(seed, results_dir)
    results = json.loads(path.read_text()) if path.is_file() else {}
    if results.get("settings", setting) != setting:  # a rerun only completes the same setting
        raise SystemExit(f"{path} holds another setting ({results['settings']}); move it first")
    results.update(seed=seed, settings=setting)
    done = results.setdefault("methods", {})
    folder = out / f"seed{seed}"
    reuse = [
        f"teacher.checkpoint={ensure_teacher(seed, setting, folder)}",
        "teacher.accept_weak=true",
    ]
    for method in [TWINS, *(m for m in methods if m != TWINS)]:
        if method in done:
            continue
        start = time.perf_counter()
        result = run_method(method, seed, setting, folder, reuse)
        if method == TWINS:
            if "accuracy" not in result:  # without scratch no method can be judged
                raise SystemExit(f"seed {seed}: the kd/scratch run did not train: {result}")
            results["teacher"] = result.pop("teacher")
            results["scratch"] = result.pop("scratch")
        if "refused" not in result and "failed" not in result:
            result["verdict"] = judge(folder / method, folder / TWINS, seed)
        result["wall_seconds"] = time.perf_counter() - start
        result["torch_threads"] = torch.get_num_threads()
        done[method] = result
        write_json(path, results)
        said = (
            result.get("refused")
            or result.get("failed")
            or (f"{result['accuracy']:.4f} ({result['verdict']['conclusion']})")
        )
        print(f"seed {seed} {method}: {said}", flush=True)


def pooled_verdict(method: str, seeds: list[str], runs: dict, out: Path) -> dict | None:
    """One verdict over the seeds (``verdict_across_seeds`` with the sign-flip test on each test
    example's net wins, since the seeds' drawn test splits share examples), read from the seeds'
    run folders under ``out``; None when a folder is gone."""
    ids, labels, method_logits, scratch_logits = [], [], [], []
    for seed in seeds:
        folder = out / f"seed{seed}"
        if not (folder / method).is_dir() or not (folder / TWINS).is_dir():
            return None
        logits, y, test_ids = test_outputs(folder / method)
        ids.append(test_ids)
        labels.append(y)
        method_logits.append(logits["kd"])
        scratch_logits.append(test_outputs(folder / TWINS)[0]["scratch"])
    wins = net_wins(ids, labels, method_logits, scratch_logits)
    comparisons = [runs[s]["methods"][method]["verdict"] for s in seeds]
    return {**verdict_across_seeds(comparisons, wins), "net_wins": wins}


def summarize(runs: dict[str, dict], run_dir: Path) -> dict:
    """Per method: accuracy per seed, mean ± sample std, kd - scratch with its CI, p and conclusion
    per seed, train seconds, whether it helped on every seed, and one verdict over the seeds."""
    seeds = sorted(runs, key=int)
    out: dict[str, dict] = {}
    for role in ("teacher", "scratch"):
        accuracy = [runs[s][role]["accuracy"] for s in seeds]
        out[role] = {"accuracy": dict(zip(seeds, accuracy, strict=True)), **_mean_std(accuracy)}
        if role == "scratch":
            out[role]["train_seconds"] = _mean_std([runs[s][role]["train_seconds"] for s in seeds])
    methods = dict.fromkeys(m for s in seeds for m in runs[s]["methods"])
    for method in methods:
        per_seed = {s: runs[s]["methods"][method] for s in seeds if method in runs[s]["methods"]}
        trained = {s: r for s, r in per_seed.items() if "verdict" in r}
        row: dict = {"seeds": list(per_seed)}
        for outcome in ("refused", "failed"):  # the one-line reason, per seed
            reasons = {s: r[outcome] for s, r in per_seed.items() if outcome in r}
            if reasons:
                row[outcome] = reasons
        if trained:
            accuracy = [r["accuracy"] for r in trained.values()]
            row["accuracy"] = {s: r["accuracy"] for s, r in trained.items()}
            row.update(_mean_std(accuracy))
            row["kd_minus_scratch"] = {
                s: {
                    "difference": r["verdict"]["accuracy_difference"],
                    "ci95": r["verdict"]["ci95"],
                    "p_value": r["verdict"]["p_value"],
                    "conclusion": r["verdict"]["conclusion"],
                }
                for s, r in trained.items()
            }
            row["train_seconds"] = _mean_std([r["train_seconds"] for r in trained.values()])
        row["helped_on_every_seed"] = len(trained) == len(seeds) and all(
            r["verdict"]["conclusion"] == HELPED for r in trained.values()
        )
        if len(trained) == len(seeds):
            row["over_seeds"] = pooled_verdict(method, seeds, runs, run_dir)
        out[method] = row
    return out


def _mean_std(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
    }


SHORT = {"no significant difference": "n.s."}


def table(summary: dict) -> str:
    """The Markdown table of docs/benchmarks.md: one row per method, in % and points."""
    lines = [
        "| method | accuracy % (mean ± std) | kd − scratch, points [95% CI], per seed "
        "| verdict per seed (McNemar p) | helped on every seed | over the seeds: mean [t 95% CI], "
        "sign-flip p | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("teacher", "scratch"):
        m = summary[name]
        seconds = f"{m['train_seconds']['mean']:.0f}" if "train_seconds" in m else "–"
        lines.append(
            f"| {name} | {100 * m['mean']:.2f} ± {100 * m['std']:.2f} | – | – | – | – | {seconds} |"
        )
    methods = {k: v for k, v in summary.items() if k not in ("teacher", "scratch")}
    n_seeds = len(summary["scratch"]["accuracy"])
    for name, m in sorted(methods.items(), key=lambda kv: -kv[1].get("mean", -1)):
        if "mean" not in m:
            outcome = "refused" if "refused" in m else "failed"
            reason = next(iter(m[outcome].values()))
            lines.append(f"| {name} | {outcome} on every seed: {reason} | – | – | no | – | – |")
            continue
        diffs, verdicts = [], []
        for d in m["kd_minus_scratch"].values():
            low, high = d["ci95"]
            diffs.append(f"{100 * d['difference']:+.1f} [{100 * low:+.1f}, {100 * high:+.1f}]")
            verdicts.append(f"{SHORT.get(d['conclusion'], d['conclusion'])} ({d['p_value']:.2g})")
        for outcome in ("refused", "failed"):
            verdicts += [f"{outcome} (seed {s})" for s in m.get(outcome, {})]
        pooled = m.get("over_seeds")
        if pooled:
            low, high = pooled["ci95"]
            pooled = (
                f"{100 * pooled['accuracy_difference']:+.2f} [{100 * low:+.1f}, {100 * high:+.1f}], "
                f"{format_p(pooled['p_value'])}: {pooled['conclusion']}"
            )
        part = f" ({len(m['accuracy'])} seed(s))" if len(m["accuracy"]) < n_seeds else ""
        lines.append(
            f"| {name} | {100 * m['mean']:.2f} ± {100 * m['std']:.2f}{part} | {'; '.join(diffs)} "
            f"| {'; '.join(verdicts)} | {'yes' if m['helped_on_every_seed'] else 'no'} "
            f"| {pooled or '–'} | {m['train_seconds']['mean']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, help="run this seed")
    parser.add_argument("--summarize", action="store_true", help="merge the seeds' files")
    parser.add_argument("--table", action="store_true", help="print the summary as Markdown")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_issue14"))
    parser.add_argument("--epochs", type=int, help="student epochs (default: the recipe's)")
    parser.add_argument("--methods", nargs="+", help="default: every registered method")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides, for every run")
    parser.add_argument("--results", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    setting = [*CORE_ONLY, *STUDENT, *LAYERS, *args.set]
    if args.epochs is not None:
        setting.append(f"student.train.epochs={args.epochs}")
    if args.seed is not None:
        torch.set_num_threads(args.threads)
        methods = args.methods or list_distillers()
        run_seed(args.seed, args.out, setting, methods, args.results)
    if args.summarize:
        files = sorted(args.results.glob("distill_methods_seed*.json"))
        runs = {f.stem.rsplit("seed", 1)[1]: json.loads(f.read_text()) for f in files}
        first = next(iter(runs.values()))
        write_json(
            results_file(results=args.results),
            {
                "recipe": str(RECIPE.relative_to(ROOT.parent)),
                "settings": first["settings"],
                "summary": summarize(runs, args.out),
                "runs": runs,
            },
        )
    if args.table:
        print(table(json.loads(results_file(results=args.results).read_text())["summary"]))


if __name__ == "__main__":
    main()
