"""Command line: a thin layer over the public functions. Only this module prints or exits."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from kdlens.errors import ConfigError, KdlensError

EXIT_USAGE = 2


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal: tqdm redraws its bar with carriage returns, which a log
    file or a pipe would keep as noise. Every other line kdlens prints is plain text."""
    return not args.quiet and sys.stderr.isatty()


def _cmd_run(args: argparse.Namespace) -> int:
    from kdlens import distributed
    from kdlens.config import default_config_path, load_config
    from kdlens.pipeline import resume_run, run, run_seeds
    from kdlens.tracking import create_tracker

    if args.resume and (args.config or args.out or args.overwrite or args.seeds is not None):
        raise ConfigError(
            "--resume continues a run with its own config, folder and seeds; "
            "drop --config/--out/--overwrite/--seeds"
        )
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {args.seeds})")
    _quiet_other_ranks()
    try:
        overrides = list(args.set)
        if args.trust_pickle:  # after --set: it may name the teacher
            overrides.append("teacher.model_args.trust_pickle=true")
        if args.resume:
            out = Path(args.resume)
            metrics = resume_run(
                out,
                overrides,
                progress=_progress(args),
                tracker=create_tracker(args.tracking, args.tracking_uri, run_name=out.name),
                tracker_for=_seed_trackers(args, out),
            )
        else:
            # Without --config: the tuned default recipe (the code defaults augment nothing).
            config = load_config(args.config or default_config_path(), overrides)
            if args.trust_pickle and not config.teacher.model.startswith("sklearn:"):
                raise ConfigError("--trust-pickle: the teacher is not an sklearn: model")
            out = (
                Path(args.out)
                if args.out
                else Path("runs") / (Path(args.config).stem if args.config else "default")
            )
            common = dict(
                overwrite=args.overwrite, progress=_progress(args), tensorboard=args.tensorboard
            )
            if (args.seeds or 1) > 1:
                metrics = run_seeds(
                    config, out, args.seeds, tracker_for=_seed_trackers(args, out), **common
                )
            else:
                tracker = create_tracker(args.tracking, args.tracking_uri, run_name=out.name)
                metrics = run(config, out, tracker=tracker, **common)
    finally:
        distributed.teardown()
    if metrics and isinstance(metrics.get("seeds"), list):  # a multi-seed folder's summary
        _print_seeds(metrics, out)
        return 0
    if metrics:  # empty on all but the main process under torchrun
        _print_summary(metrics)
        _print_deploy(metrics)
        print(f"\nrun folder: {out}")
        from kdlens.run.folder import RunFolder

        folder = RunFolder(out)
        if folder.report.is_file():
            print(f"report: {folder.report}")
        if args.tensorboard:
            print(f"tensorboard: tensorboard --logdir {folder.tensorboard}")
    return 0


def _seed_trackers(args: argparse.Namespace, out: Path):
    """``--tracking`` with ``--seeds``: one tracked run per seed, named ``OUT/seed-<k>``."""
    from kdlens.tracking import create_tracker

    if not args.tracking:
        return None
    return lambda k: create_tracker(
        args.tracking, args.tracking_uri, run_name=f"{out.name}/seed-{k}"
    )


def _print_seeds(summary: dict, out: Path) -> None:
    from kdlens.report.words import seeds_lines, size_line

    seeds = summary["seeds"]
    cols = ["accuracy", "fidelity", "ece", "nll"]
    width = max(12, *(len(name) + 1 for name in summary["models"]))
    print(f"\n{len(seeds)} seeds ({', '.join(map(str, seeds))}): mean ± std over seeds")
    print(f"{'model':<{width}}" + "".join(f"{c:>20}" for c in cols))
    for name, m in summary["models"].items():
        cells = [
            f"{m[c]['mean']:>11.4f} ± {m[c]['std']:.4f}"
            if c in m and m[c].get("std") is not None
            else f"{'-':>20}"
            for c in cols
        ]
        print(f"{name:<{width}}" + "".join(cells))
    print()
    for line in seeds_lines(summary):
        print(line)
    ratios = summary.get("summary", {}).get("teacher_vs_student")
    if ratios:
        means = {k: v["mean"] for k, v in ratios.items() if isinstance(v, dict)}
        line = size_line({"summary": {"teacher_vs_student": means}, "models": summary["records"]})
        if line:
            print(f"{line} (mean of {len(seeds)} seeds)")
    print(f"\nrun folder: {out} (summary.json; one run folder per seed)")
    from kdlens.run.folder import RunFolder

    if RunFolder(out).report.is_file():
        print(f"report: {RunFolder(out).report}")


def _cmd_report(args: argparse.Namespace) -> int:
    from kdlens.report import report_run

    path = report_run(args.run_dir, args.set, compute=not args.render_only)
    print(f"report: {path}")
    return 0


def _print_summary(metrics: dict) -> None:
    from kdlens.report.words import verdict_lines

    teacher = metrics["models"].get("teacher", {})
    if teacher.get("loaded_val_accuracy") is not None:
        pre = teacher.get("preprocess") or {}
        fed = f"normalize {pre['normalize']}" if pre else "saved outputs"
        if pre.get("resize"):
            fed += f", resize {pre['resize'][0]}x{pre['resize'][1]}"
        print(
            f"\nteacher loaded, not trained: validation accuracy "
            f"{teacher['loaded_val_accuracy']:.4f} (chance {teacher['chance']:.4f}; {fed})"
        )
    cols = ["accuracy", "fidelity", "kl_to_teacher", "ece", "nll", "params", "train_seconds"]
    width = max(12, *(len(name) + 1 for name in metrics["models"]))
    print(f"\n{'model':<{width}}" + "".join(f"{c:>15}" for c in cols))
    for name, m in metrics["models"].items():
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append(
                f"{'-':>15}" if v is None else f"{v:>15,}" if isinstance(v, int) else f"{v:>15.4f}"
            )
        print(f"{name:<{width}}" + "".join(cells))
    lines = verdict_lines(metrics)
    if lines:
        print()
        for line in lines:
            print(line)
    print("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in metrics["timings"].items()))


def _quiet_other_ranks() -> None:
    from kdlens import distributed

    if not distributed.launched_main():
        logging.getLogger("kdlens").setLevel(logging.WARNING)  # one process reports


def _search_options(args: argparse.Namespace) -> dict:
    """What ``kdlens tune`` and ``kdlens sweep`` pass alike to their search."""
    return dict(
        overrides=args.set,
        progress=_progress(args),
        storage=args.storage,
        study=args.study,
        workers=args.workers,
        teachers_dir=args.teachers,
        tracking=args.tracking,
        tracking_uri=args.tracking_uri,
    )


def _cmd_sweep(args: argparse.Namespace) -> int:
    from kdlens import distributed
    from kdlens.search import parse_grid, run_sweep
    from kdlens.search.sweep import csv_rows

    _quiet_other_ranks()
    try:
        document = run_sweep(
            args.config,
            parse_grid(args.grid),
            args.seeds,
            args.out,
            **_search_options(args),
        )
    finally:
        distributed.teardown()
    if not document:  # every process but the main one under torchrun
        return 0
    keys = list(document["grid"])
    print(f"\ntest split, mean ± std over {len(document['seeds'])} seed(s):")
    print("".join(f"{k:>24}" for k in keys) + f"{'kd accuracy':>22}{'kd fidelity':>22}")
    for cell, row in zip(document["cells"], csv_rows(document), strict=True):
        cells = "".join(f"{str(row[k]):>24}" for k in keys)
        for metric in ("accuracy", "fidelity"):
            if metric + "_mean" in row:
                cells += f"{row[metric + '_mean']:>15.4f} ± {row[metric + '_std']:.4f}"
            else:
                cells += f"{'failed' if cell.get('failed') else 'not run yet':>22}"
        print(cells)
    if document["unfinished"]:
        print(f"\n{document['unfinished']} run(s) still running elsewhere; rerun to update")
    print(f"\nsweep folder: {args.out} (sweep.json, sweep.csv, sweep.png)")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from kdlens import distributed
    from kdlens.search import parse_space
    from kdlens.search.tune import run_tune, seed_verdict

    _quiet_other_ranks()
    try:
        document = run_tune(
            args.config,
            parse_space(args.space),
            args.trials,
            args.out,
            objective=args.objective,
            pruner=args.pruner,
            seeds=args.seeds,
            **_search_options(args),
        )
    finally:
        distributed.teardown()
    if not document:  # every process but the main one under torchrun
        return 0
    out = Path(args.out)
    objective = document["objective"]
    counts = ", ".join(f"{n} {s.lower()}" for s, n in document["trials"].items())
    print(f"\ntrials: {counts}; the distilled students trained {document['epochs']} epochs")
    best = document["best"]
    if best is None:
        print("no trial finished: nothing to re-run")
    else:
        print(
            f"best: trial {best['number']}, {objective['model']} {objective['metric']} "
            f"{best['value']:.4f} (validation split)"
        )
        for key, value in best["params"].items():
            print(f"  {key} = {value:.6g}" if isinstance(value, float) else f"  {key} = {value}")
    final = document.get("final")
    if final:
        print(f"\nbest config on the test split ({len(final['seeds'])} seed(s)):")
        print(
            f"{'seed':>6}{'kd accuracy':>14}{'scratch accuracy':>18}{'kd - scratch':>14}  verdict"
        )
        for r in final["runs"]:
            verdict = seed_verdict(r) or ""
            print(
                f"{r['seed']:>6}{r['kd_accuracy']:>14.4f}{r['scratch_accuracy']:>18.4f}"
                f"{r['kd_minus_scratch']:>+14.4f}  {verdict}"
            )
        print(final["verdict"])
    if document.get("note"):
        print(document["note"])
    print(
        f"\ntune folder: {out} (trials.csv, trials.json, tune.html"
        + (", best.yaml)" if best else ")")
    )
    return 0


def _print_deploy(metrics: dict) -> None:
    from kdlens.report.words import size_line

    models = {n: m for n, m in metrics["models"].items() if "size_bytes" in m}
    if not models:
        return
    first = next(iter(models.values()))
    threads, clock = first.get("threads"), first.get("clock", "wall")
    print(
        f"\n{'model':<20}{'size (KB)':>12}{'MFLOPs/ex':>12}{'latency b1 (ms)':>18}{'ex/s at b256':>16}"
    )
    for name, m in models.items():
        print(
            f"{name:<20}{m['size_bytes'] / 1024:>12,.1f}{m['flops'] / 1e6:>12.3f}"
            f"{m['latency_ms_b1']:>18.3f}{m['throughput_b256']:>16,.0f}"
        )
    print(
        f"(timings: medians of {clock} time, {threads} thread(s); "
        "FLOPs of int8 models are counted on their float graph)"
    )
    line = size_line(metrics)
    if line:
        print(line)


def _cmd_list(args: argparse.Namespace) -> int:
    from kdlens.data import DATASETS, list_sources
    from kdlens.distill import DISTILLERS
    from kdlens.models import MODELS, PREFIXES

    for title, entries in (
        ("datasets", {**DATASETS.describe(), **list_sources()}),
        ("models", {**MODELS.describe(), **PREFIXES}),
        ("distillation methods", DISTILLERS.describe()),
    ):
        print(f"{title}:")
        for name, text in entries.items():
            print(f"  {name:<28} {text}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from kdlens.deploy.export import export_run_model

    r = export_run_model(args.run_dir, args.model, args.format)
    if "quantization" in r:
        _print_int8_export(r, args)
        return 0
    pt, ort = r["pytorch"], r["onnxruntime"]
    print(f"wrote {Path(args.run_dir) / r['file']} ({r['size_bytes']:,} bytes)")
    print(
        f"parity on {r['n_checked']} test examples: max abs logit difference "
        f"{r['max_abs_logit_diff']:.2g}, argmax identical"
    )
    print(f"{'runtime':<14}{'latency b1 (ms)':>18}{'throughput b256 (ex/s)':>26}")
    for label, t in (("pytorch", pt), ("onnxruntime", ort)):
        print(f"{label:<14}{t['latency_ms_b1']:>18.3f}{t['throughput_b256']:>26,.0f}")
    print(f"(medians of {pt.get('clock', 'wall')} time, {pt['threads']} thread(s))")
    return 0


def _print_int8_export(r: dict, args: argparse.Namespace) -> None:
    how = {
        "onnxruntime-dynamic-int8": f"ONNX Runtime dynamic int8 of {r['source']}",
        "onnxruntime-static-int8": "ONNX Runtime static int8, written by the run's deploy stage",
    }[r["quantization"]]
    path = Path(args.run_dir) / r["file"]
    verb = "wrote" if r["agreement_with_pytorch_int8"] is not None else "int8 ONNX model:"
    print(f"{verb} {path} ({r['size_bytes']:,} bytes): {how}")
    agree = f"predictions on {r['n_checked']} test examples: "
    if r["agreement_with_pytorch_int8"] is not None:
        agree += f"{r['agreement_with_pytorch_int8']:.1%} agree with the PyTorch int8 model, "
    print(agree + f"{r['agreement_with_fp32']:.1%} with the fp32 model {r['source']}")
    rows = [
        (f"{r['source']} (fp32)", "onnxruntime", r["fp32"]["size_bytes"], r["fp32"]["onnxruntime"]),
        (f"{args.model} (int8)", "onnxruntime", r["size_bytes"], r["onnxruntime"]),
    ]
    if r.get("pytorch_int8"):
        rows.append((f"{args.model} (int8)", "pytorch", None, r["pytorch_int8"]))
    print(
        f"{'model':<24}{'runtime':<14}{'ONNX size (KB)':>16}{'latency b1 (ms)':>18}{'ex/s at b256':>16}"
    )
    for label, runtime, size, t in rows:
        kb = f"{size / 1024:>16,.1f}" if size is not None else f"{'-':>16}"
        print(
            f"{label:<24}{runtime:<14}{kb}{t['latency_ms_b1']:>18.3f}{t['throughput_b256']:>16,.0f}"
        )
    t = r["onnxruntime"]
    print(f"(medians of {t.get('clock', 'wall')} time, {t['threads']} thread(s))")


def _tracking_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking",
        choices=["mlflow"],
        help="also log to MLflow: config, per-epoch and final metrics, verdicts, report.html",
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: a local mlruns/ folder)",
    )


def _search_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    parser.add_argument("--out", required=True, help=f"{kind} folder; rerun to resume")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fixed override"
    )
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage shared by machines: postgresql://..., mysql://... "
        "(default: a journal file in the folder)",
    )
    parser.add_argument("--study", help="study name in the storage (default: the folder's name)")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes on this machine (default 1)"
    )
    parser.add_argument(
        "--teachers",
        metavar="DIR",
        help="where the shared teachers are trained (default: OUT/teachers)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    _tracking_arguments(parser)


def build_parser() -> argparse.ArgumentParser:
    from kdlens import __version__

    parser = argparse.ArgumentParser(
        prog="kdlens", description="Distill a teacher into a student and see what was distilled."
    )
    parser.add_argument("--version", action="version", version=f"kdlens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train teacher, scratch and distilled students; evaluate them")
    run.add_argument("--config", help="YAML file overriding the default config")
    run.add_argument("--out", help="run folder (default: runs/<config name>)")
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one field, e.g. --set distill.temperature=4 (repeatable)",
    )
    run.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    run.add_argument(
        "--seeds",
        type=int,
        metavar="N",
        help="N complete runs with seeds seed..seed+N-1 into RUN_DIR/seed-<k>/, then a summary "
        "across them (summary.json, report.html); default 1: one ordinary run folder",
    )
    run.add_argument(
        "--trust-pickle",
        action="store_true",
        help="let an sklearn: teacher load from a .joblib/.pkl pickle (it can run any code)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--tensorboard", action="store_true", help="write TensorBoard event files to RUN_DIR/tb/"
    )
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run that stopped: skip finished stages, resume the interrupted one",
    )
    _tracking_arguments(run)
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser(
        "report", help="explain a run folder: explain.json, figures/*.png and report.html"
    )
    rep.add_argument("run_dir", metavar="RUN_DIR", help="folder written by `kdlens run`")
    rep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override an explain setting, e.g. --set explain.n_examples=200 (repeatable)",
    )
    rep.add_argument(
        "--render-only",
        action="store_true",
        help="redraw figures and report.html from the saved explain.json",
    )
    rep.set_defaults(func=_cmd_report)

    sweep = sub.add_parser(
        "sweep", help="run a grid of overrides over seeds on Optuna, one teacher per seed"
    )
    sweep.add_argument("config", help="YAML config every cell starts from")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        metavar="KEY=V1,V2",
        help="a swept field and its values, e.g. --grid distill.method=kd,dkd (repeatable)",
    )
    sweep.add_argument("--seeds", type=int, default=3, help="seeds per cell (default 3)")
    _search_arguments(sweep, "sweep")
    sweep.set_defaults(func=_cmd_sweep)

    tune = sub.add_parser(
        "tune",
        help="search config values with Optuna on the distilled student's validation metric",
    )
    tune.add_argument("config", help="YAML config every trial starts from")
    tune.add_argument(
        "--space",
        action="append",
        default=[],
        required=True,
        metavar="KEY=SPEC",
        help="a searched field: float:LOW:HIGH, log:LOW:HIGH, int:LOW:HIGH or choice:A,B "
        "(repeatable), e.g. --space distill.temperature=log:1:32",
    )
    tune.add_argument("--trials", type=int, required=True, help="trials in the study")
    tune.add_argument(
        "--objective",
        default="val_accuracy",
        help="the distilled student's validation metric: val_accuracy (default) or val_nll",
    )
    tune.add_argument(
        "--pruner",
        default="median",
        choices=["median", "none"],
        help="stop trials below the median at the same epoch (default) or never",
    )
    tune.add_argument(
        "--seeds",
        type=int,
        default=3,
        help="re-run the best config on the test split for this many seeds (default 3; 0: none)",
    )
    _search_arguments(tune, "tune")
    tune.set_defaults(func=_cmd_tune)

    exp = sub.add_parser("export", help="export a model of a run to ONNX, checked by ONNX Runtime")
    exp.add_argument("run_dir", help="a run folder written by `kdlens run`")
    exp.add_argument("--model", default="kd", help="model to export (default: kd)")
    exp.add_argument("--format", default="onnx", choices=["onnx"], help="export format")
    exp.set_defaults(func=_cmd_export)

    lst = sub.add_parser("list", help="datasets, models and distillation methods")
    lst.set_defaults(func=_cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except KdlensError as e:
        print(f"kdlens: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("kdlens: interrupted", file=sys.stderr)
        return 130
