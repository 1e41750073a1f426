"""What owning the run folder costs a run: taking the lock, checking the target and writing the
marker (``RunFolder.locked`` + ``check_target`` + ``start``), median over repeats.

    PYTHONPATH=src python benchmarks/run_folder_overhead.py --repeats 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

from kdlens.config import RunConfig
from kdlens.run import RunFolder


def once(root: Path, config: dict) -> float:
    folder = RunFolder(root / "run")
    start = time.perf_counter()
    with folder.locked():
        folder.check_target(overwrite=True)
        folder.start(config, command=["kdlens", "run"])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/run_folder_overhead.json")
    args = parser.parse_args()
    config = RunConfig().model_dump(mode="json")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        once(root, config)  # imports and the first mkdir are not the steady cost
        fresh = []
        for i in range(args.repeats):  # a new folder each time: lock, check, marker
            fresh.append(once(root / str(i), config))
        again = [once(root, config) for _ in range(args.repeats)]  # --overwrite of a run folder
    result = {
        "date": date.today().isoformat(),
        "repeats": args.repeats,
        "new_folder_ms_median": 1000 * statistics.median(fresh),
        "new_folder_ms_p90": 1000 * sorted(fresh)[int(0.9 * len(fresh))],
        "overwrite_ms_median": 1000 * statistics.median(again),
        "overwrite_ms_p90": 1000 * sorted(again)[int(0.9 * len(again))],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
