"""What a model costs to ship: parameters, bytes on disk, FLOPs, CPU latency and throughput.

FLOPs come from PyTorch's ``FlopCounterMode`` (a multiply-add counts as 2 FLOPs); timings from
``torch.utils.benchmark.Timer``: a warm-up, then the median of repeated blocks of calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

Predict = Callable[[torch.Tensor], Any]


def count_nonzero_parameters(model: nn.Module) -> int:
    """Parameters (and quantized weights) that are not exactly zero: what pruning removes."""
    return sum(int(torch.count_nonzero(t)) for t in model.state_dict().values() if _is_weight(t))


def _is_weight(t: Any) -> bool:
    return (
        isinstance(t, torch.Tensor) and t.is_floating_point() or getattr(t, "is_quantized", False)
    )


def size_bytes(path: str | Path) -> int:
    """Bytes of a saved model file (a checkpoint or an ONNX file)."""
    return Path(path).stat().st_size


@torch.no_grad()
def flops_per_example(model: nn.Module, example: torch.Tensor) -> int:
    """FLOPs of one forward pass on one example, counted by ``torch.utils.flop_counter``.

    Quantized kernels are not counted by the flop counter (it sees 0), so a quantized model should
    be counted on the float model it came from: the arithmetic is the same, only in int8.
    """
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example[:1])
    model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class Timing:
    """Median seconds per call over ``blocks`` timed blocks of ``calls_per_block`` calls."""

    median_s: float
    blocks: int
    calls_per_block: int
    threads: int
    clock: str


CLOCKS = ("wall", "cpu")


def time_call(
    fn: Callable[[], Any],
    warmup: int = 3,
    min_run_time: float = 0.2,
    threads: int | None = None,
    clock: str = "wall",
) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then the median of blocks for ``min_run_time`` s.

    ``clock="cpu"`` counts the calling thread's CPU time (``time.thread_time``) instead of wall
    time: with one thread it equals the latency of an idle machine, and time spent waiting for a
    core on a busy one is not counted. It is only meaningful with ``threads=1``.
    """
    # Importing torch.utils.benchmark imports cpp_extension, which logs a "No CUDA runtime"
    # warning on CPU machines: noise on the user's terminal, so that logger is quietened.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    from torch.utils.benchmark import Timer

    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {CLOCKS}, got {clock!r}")
    # Timer runs the statement with this many torch threads and restores the old count after.
    threads = threads or torch.get_num_threads()
    if clock == "cpu" and threads != 1:
        raise ValueError("the cpu clock counts one thread: time with threads=1")
    for _ in range(warmup):
        fn()
    kwargs = {"timer": time.thread_time} if clock == "cpu" else {}
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, **kwargs)
    m = timer.blocked_autorange(min_run_time=min_run_time)
    return Timing(float(m.median), len(m.times), int(m.number_per_run), threads, clock)


def batch_of(x: torch.Tensor, n: int) -> torch.Tensor:
    """Exactly ``n`` examples from ``x``, repeating it when it holds fewer."""
    reps = -(-n // len(x))
    return x.repeat(reps, *([1] * (x.ndim - 1)))[:n].contiguous()


def measure_speed(
    predict: Predict,
    x: torch.Tensor,
    warmup: int = 3,
    min_run_time: float = 0.2,
    threads: int | None = None,
    clock: str = "wall",
    batch: int = 256,
) -> dict[str, Any]:
    """Latency at batch 1 (ms) and throughput at batch ``batch`` (examples/s) of ``predict``.

    ``threads`` applies to PyTorch; an ONNX Runtime session fixes its own threads when created.
    """
    one, many = batch_of(x, 1), batch_of(x, batch)
    with torch.inference_mode():
        b1 = time_call(lambda: predict(one), warmup, min_run_time, threads, clock)
        bn = time_call(lambda: predict(many), warmup, min_run_time, threads, clock)
    return {
        "latency_ms_b1": 1000 * b1.median_s,
        f"throughput_b{batch}": batch / bn.median_s,
        "timing": {"b1": asdict(b1), f"b{batch}": asdict(bn)},
        "threads": b1.threads,
        "clock": clock,
    }


def ratios(big: dict[str, Any], small: dict[str, Any]) -> dict[str, float | None]:
    """How many times smaller/cheaper/faster ``small`` is than ``big`` (> 1 means better)."""

    def div(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    return {
        "params": div(big.get("params"), small.get("params")),
        "size_bytes": div(big.get("size_bytes"), small.get("size_bytes")),
        "flops": div(big.get("flops"), small.get("flops")),
        "latency_b1": div(big.get("latency_ms_b1"), small.get("latency_ms_b1")),
        "throughput_b256": div(small.get("throughput_b256"), big.get("throughput_b256")),
        "accuracy_delta": (
            small["accuracy"] - big["accuracy"]
            if "accuracy" in small and "accuracy" in big
            else None
        ),
    }
