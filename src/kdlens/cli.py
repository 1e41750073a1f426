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
    from kdlens.config import load_config
    from kdlens.pipeline import run
    from kdlens.resume import resume_run

    if args.resume and (args.config or args.out or args.overwrite):
        raise ConfigError(
            "--resume continues a run with its own config and folder; drop --config/--out/--overwrite"
        )
    if distributed.launched() and int(os.environ.get("RANK", "0")) > 0:
        logging.getLogger("kdlens").setLevel(logging.WARNING)  # one process reports
    try:
        if args.resume:
            out = Path(args.resume)
            metrics = resume_run(out, args.set, progress=not args.quiet)
        else:
            config = load_config(args.config, args.set)
            out = (
                Path(args.out)
                if args.out
                else Path("runs") / (Path(args.config).stem if args.config else "default")
            )
            metrics = run(config, out, overwrite=args.overwrite, progress=not args.quiet)
    finally:
        distributed.teardown()
    if metrics:  # empty on all but the main process under torchrun
        _print_summary(metrics)
        print(f"\nrun folder: {out}")
    return 0


def _print_summary(metrics: dict) -> None:
    cols = ["accuracy", "fidelity", "kl_to_teacher", "ece", "nll", "params", "train_seconds"]
    print(f"\n{'model':<12}" + "".join(f"{c:>15}" for c in cols))
    for name, m in metrics["models"].items():
        cells = []
        for c in cols:
            v = m.get(c)
            cells.append(
                f"{'-':>15}" if v is None else f"{v:>15,}" if isinstance(v, int) else f"{v:>15.4f}"
            )
        print(f"{name:<12}" + "".join(cells))
    gap = metrics["summary"].get("gap_closed")
    if gap is not None:
        print(f"\ndistillation closed {100 * gap:.0f}% of the teacher-scratch accuracy gap")
    print("stage times: " + ", ".join(f"{k} {v:.1f}s" for k, v in metrics["timings"].items()))


def _cmd_list(args: argparse.Namespace) -> int:
    from kdlens.data import DATASETS
    from kdlens.data.files import PREFIXES as DATA_PREFIXES
    from kdlens.distill import DISTILLERS
    from kdlens.models import MODELS, PREFIXES

    for title, entries in (
        ("datasets", {**DATASETS.describe(), **DATA_PREFIXES}),
        ("models", {**MODELS.describe(), **PREFIXES}),
        ("distillation methods", DISTILLERS.describe()),
    ):
        print(f"{title}:")
        for name, text in entries.items():
            print(f"  {name:<28} {text}")
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
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run that stopped: skip finished stages, resume the interrupted one",
    )
    run.set_defaults(func=_cmd_run)

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
