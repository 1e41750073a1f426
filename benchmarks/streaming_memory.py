"""Peak memory of a run whose data are 4x larger than ``data.max_memory_gb``.

An ``.npz`` written by ``numpy.savez`` holds 50,000 random 1x32x32 float32 images (0.205 GB; the
labels follow ten fixed random projections, so there is something to learn) and
``data.max_memory_gb`` is 0.05. Each arm is a fresh process running ``kdlens run``'s first
stages (teacher, scratch and kd students, evaluation) and reports its peak resident memory
(``resource.getrusage``: ``ru_maxrss``) above what it held after its imports:

- ``reference``: 1,000 such images, in memory: what the runtime, the models and the training
  loop cost by themselves;
- ``streaming_0_workers``: the 50,000 images streamed, read in the training process;
- ``streaming_2_workers``: the same with two DataLoader worker processes (their peak is
  reported apart: forked, they share the parent's pages, so the two do not add up);
- ``in_memory``: the same file with the default ``data.max_memory_gb`` (4): loaded.

    python benchmarks/streaming_memory.py
    python benchmarks/streaming_memory.py --quick --out /tmp/m.json   # 5,000 images, limit / 10
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np

N, SHAPE, LIMIT = 50_000, (1, 32, 32), 0.05


def rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: kilobytes


def write_npz(path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    x = rng.random((n, *SHAPE), dtype=np.float32)
    w = np.random.default_rng(1).normal(size=(np.prod(SHAPE), 10)).astype(np.float32)
    y = ((x.reshape(n, -1) - 0.5) @ w).argmax(1)
    np.savez(path, x=x, y=y)


def child(data: str, max_memory_gb: float, workers: int, out: str) -> None:
    """One arm, in its own process: the run's first stages, then the peaks as JSON."""
    import torch

    from kdlens.config import load_config
    from kdlens.models import count_parameters, create_model
    from kdlens.pipeline import run

    torch.set_num_threads(1)
    after_imports = rss_mb()
    overrides = [
        f"data.name=npz:{data}",
        f"data.max_memory_gb={max_memory_gb}",
        f"data.workers={workers}",
        "teacher.model=mlp",
        "teacher.model_args={hidden: [256]}",
        "student.model=mlp",
        "student.model_args={hidden: [64]}",
        "teacher.train={epochs: 1, batch_size: 256}",
        "student.train={epochs: 1, batch_size: 256}",
    ]
    metrics = run(load_config(None, overrides), out, only=("teacher", "students", "evaluate"))
    peak = rss_mb()
    # Weights, gradients and Adam's two moments of the teacher and a student (two students
    # train one after the other; the teacher stays).
    params = sum(count_parameters(create_model("mlp", SHAPE, 10, hidden=h)) for h in ([256], [64]))
    print(
        json.dumps(
            {
                "after_imports_mb": after_imports,
                "peak_mb": peak,
                "peak_above_imports_mb": peak - after_imports,
                "workers_peak_mb": rss_mb(resource.RUSAGE_CHILDREN) if workers else None,
                "models_mb": 4 * params * 4 / 2**20,
                "streaming": any("stream, batch by batch" in n for n in metrics["notes"]),
                "accuracy": {k: metrics["models"][k]["accuracy"] for k in ("teacher", "kd")},
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", nargs=4, metavar=("DATA", "GB", "WORKERS", "OUT"))
    parser.add_argument("--out", default="benchmarks/results/streaming_memory.json")
    parser.add_argument("--quick", action="store_true", help="10x fewer images, 10x lower limit")
    args = parser.parse_args()
    if args.child:
        data, gb, workers, out = args.child
        child(data, float(gb), int(workers), out)
        return

    n, limit = (N // 10, LIMIT / 10) if args.quick else (N, LIMIT)  # still 4x over the limit
    arms = {}
    with tempfile.TemporaryDirectory() as tmp:
        big, small = Path(tmp) / "big.npz", Path(tmp) / "small.npz"
        write_npz(big, n)
        write_npz(small, 1000)
        plan = {
            "reference": (small, 4.0, 0),
            "streaming_0_workers": (big, limit, 0),
            "streaming_2_workers": (big, limit, 2),
            "in_memory": (big, 4.0, 0),
        }
        for name, (data, gb, workers) in plan.items():
            cmd = [sys.executable, __file__, "--child", str(data), str(gb), str(workers)]
            cmd.append(str(Path(tmp) / name))
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            arms[name] = json.loads(res.stdout.strip().splitlines()[-1])
            a = arms[name]
            print(
                f"{name:>20}: peak {a['peak_mb']:7.1f} MB, {a['peak_above_imports_mb']:6.1f} MB "
                f"above the imports"
                + (f", workers' peak {a['workers_peak_mb']:.1f} MB" if a["workers_peak_mb"] else "")
            )
    decoded_mb = n * int(np.prod(SHAPE)) * 4 / 2**20
    ref = arms["reference"]["peak_above_imports_mb"]
    result = {
        "date": date.today().isoformat(),
        "data": f"{n} x {SHAPE} float32 = {decoded_mb:.1f} MB ({n * np.prod(SHAPE) * 4 / 1e9:.3f} GB)",
        "max_memory_gb": limit,
        "limit_mb": limit * 1e9 / 2**20,
        "arms": arms,
        "streaming_above_reference_mb": arms["streaming_0_workers"]["peak_above_imports_mb"] - ref,
        "in_memory_above_reference_mb": arms["in_memory"]["peak_above_imports_mb"] - ref,
        "platform": platform.platform(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(
        f"data {decoded_mb:.0f} MB decoded, limit {result['limit_mb']:.0f} MB; above the "
        f"reference run: streaming {result['streaming_above_reference_mb']:.1f} MB, in memory "
        f"{result['in_memory_above_reference_mb']:.1f} MB; models {arms['reference']['models_mb']:.1f} MB"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
