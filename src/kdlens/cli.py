"""Command line: a thin layer over the public functions. Only this module prints or exits."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from kdlens.errors import ConfigError, KdlensError

EXIT_USAGE = 2


def _cmd_run(args: argparse.Namespace) -> int:
    from kdlens import distributed
    from kdlens.config import default_config_path, load_config
    from kdlens.pipeline import resume_run, run

    if args.resume and (args.config or args.out or args.overwrite):
        raise ConfigError(
            "--resume continues a run with its own config and folder; drop --config/--out/--overwrite"
        )
    if distributed.launched() and int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger("kdlens").setLevel(logging.WARNING)  # one process reports
    try:
        overrides = list(args.set)
        if args.trust_pickle:  # after --set: it may name the teacher
            overrides.append("teacher.model_args.trust_pickle=true")
        if args.resume:
            out = Path(args.resume)
            metrics = resume_run(out, overrides, progress=not args.quiet)
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
            metrics = run(
                config,
                out,
                overwrite=args.overwrite,
                progress=not args.quiet,
                tensorboard=args.tensorboard,
            )
    finally:
        distributed.teardown()
    if metrics:  # empty on all but the main process under torchrun
        _print_summary(metrics)
        _print_deploy(metrics)
        print(f"\nrun folder: {out}")
        if (out / "report.html").is_file():
            print(f"report: {out / 'report.html'}")
        if args.tensorboard:
            print(f"tensorboard: tensorboard --logdir {out / 'tb'}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from kdlens.report import report_run

    path = report_run(args.run_dir, args.set, compute=not args.render_only)
    print(f"report: {path}")
    return 0


def _print_summary(metrics: dict) -> None:
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
    gap = metrics["summary"].get("gap_closed")
    if gap is not None:
        print(f"\ndistillation closed {100 * gap:.0f}% of the teacher-scratch accuracy gap")
    print("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in metrics["timings"].items()))


def _cmd_sweep(args: argparse.Namespace) -> int:
    from kdlens.sweep import parse_grid, run_sweep
    from kdlens.sweep.runner import csv_rows

    document = run_sweep(
        args.config,
        parse_grid(args.grid),
        args.seeds,
        args.out,
        overrides=args.set,
        progress=not args.quiet,
    )
    keys = list(document["grid"])
    print("\n" + "".join(f"{k:>24}" for k in keys) + f"{'accuracy':>20}{'fidelity':>20}")
    for row in csv_rows(document):
        cells = "".join(f"{str(row[k]):>24}" for k in keys)
        for metric in ("accuracy", "fidelity"):
            cells += f"{row[metric + '_mean']:>13.4f} ± {row[metric + '_std']:.4f}"
        print(cells)
    print(f"\nsweep folder: {args.out} (sweep.json, sweep.csv, sweep.png)")
    return 0


def _print_deploy(metrics: dict) -> None:
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
    from kdlens.deploy.onnx_export import export_run_model

    r = export_run_model(args.run_dir, args.model, args.format)
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
        "sweep", help="run a grid of overrides over seeds, one teacher per seed; resumable"
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
    sweep.add_argument("--out", required=True, help="sweep folder; rerun to resume")
    sweep.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="fixed override"
    )
    sweep.add_argument("--quiet", action="store_true", help="no progress bars")
    sweep.set_defaults(func=_cmd_sweep)

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
