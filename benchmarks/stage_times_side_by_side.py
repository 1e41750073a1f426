"""Issue 11: no stage got slower. The default run's stage times, this tree against another one
(the code before the restructure), side by side: runs alternate between the two trees, each a
fresh ``python -m kdlens run`` process on the same config, and the medians of the stage times
that ``metrics.json`` records are compared.

    git worktree add --detach /tmp/old 1cad68b      # the last commit before the run/ package
    PYTHONPATH=src python benchmarks/stage_times_side_by_side.py --other /tmp/old \
        --config /tmp/old/configs/default.yaml --repeats 2

The config is the old tree's default (both trees read it); stages that only the new code has
(``verdicts``) are listed but not compared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(tree: Path, config: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, "-m", "kdlens", "run", "--config", str(config)]
    command += ["--out", str(out), "--overwrite", "--quiet"]
    started = time.perf_counter()
    subprocess.run(command, check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    timings = json.loads((out / "metrics.json").read_text())["timings"]
    timings["process_wall"] = time.perf_counter() - started
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", type=Path, required=True, help="the other source tree")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/stage_times_side_by_side.json")
    args = parser.parse_args()
    trees = {"before": args.other.resolve(), "after": ROOT}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            order = list(trees) if r % 2 == 0 else list(reversed(trees))  # alternate who goes first
            for name in order:
                runs[name].append(one_run(trees[name], args.config, Path(tmp) / f"{name}{r}"))
                print(f"repeat {r + 1}: {name} total {runs[name][-1]['total']:.1f} s", flush=True)
    stages = sorted(set().union(*(t for r in runs.values() for t in r)))
    medians = {
        name: {s: statistics.median(t[s] for t in rs if s in t) for s in stages if s in rs[0]}
        for name, rs in runs.items()
    }
    ratios = {
        s: medians["after"][s] / medians["before"][s]
        for s in stages
        if s in medians["before"] and s in medians["after"] and medians["before"][s] > 0
    }
    result = {
        "date": str(date.today()),
        "config": str(args.config),
        "repeats": args.repeats,
        "median_seconds": medians,
        "after_over_before": ratios,
        "runs": runs,
        "load_average": os.getloadavg(),
        "platform": platform.platform(),
    }
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"{'stage':<22}{'before s':>10}{'after s':>10}{'ratio':>8}")
    for s in stages:
        b, a = medians["before"].get(s), medians["after"].get(s)
        cells = [f"{v:>10.1f}" if v is not None else f"{'-':>10}" for v in (b, a)]
        ratio = f"{ratios[s]:>8.2f}" if s in ratios else f"{'-':>8}"
        print(f"{s:<22}{''.join(cells)}{ratio}")


if __name__ == "__main__":
    main()
