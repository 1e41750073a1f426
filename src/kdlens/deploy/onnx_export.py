"""ONNX export with a dynamic batch dimension, checked against PyTorch with ONNX Runtime.

We use the ``torch.export``-based exporter (``dynamo=True``, which needs ``onnxscript``): the
TorchScript exporter is deprecated and cannot export the default teacher, whose
``AdaptiveAvgPool2d(4)`` on 7x7 maps is not a whole-factor pooling.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlens.errors import KdlensError
from kdlens.evaluate.compression import measure_speed, size_bytes

ATOL = 1e-4  # largest |ONNX Runtime logit - PyTorch logit| an export may show


class ExportError(KdlensError):
    """A model cannot be exported, or the exported model does not match PyTorch."""


def export_onnx(model: nn.Module, example: torch.Tensor, path: str | Path, name: str) -> Path:
    """Write ``model`` to ``path`` with input ``x`` and output ``logits``, batch size dynamic."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).cpu().eval()
    # Two examples: a batch of one can be specialised to a constant by torch.export.
    x = example[:2].cpu().float()
    if len(x) < 2:
        x = x.repeat(2, *([1] * (x.ndim - 1)))
    batch = torch.export.Dim("batch", min=1)
    try:
        with quiet():  # the exporter prints and logs its progress
            torch.onnx.export(
                model,
                (x,),
                str(path),
                dynamo=True,
                input_names=["x"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                external_data=False,
            )
    except ImportError as e:
        raise ExportError(
            f"ONNX export needs {e.name or 'onnxscript'}: pip install onnxscript"
        ) from None
    except Exception as e:
        path.unlink(missing_ok=True)
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ExportError(
            f"model {name!r} cannot be exported to ONNX ({type(e).__name__}: {first})"
        ) from None
    return path


@contextlib.contextmanager
def quiet():
    """Swallow what the exporter and ONNX Runtime's quantizer print and log: library code stays
    quiet, the CLI prints."""
    chatter = io.StringIO()
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter), _no_info_logs():
        yield


@contextlib.contextmanager
def _no_info_logs():
    """onnxscript logs each optimisation pass at INFO; the CLI shows kdlens's own INFO lines."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


class OrtModel:
    """An ONNX file run by ONNX Runtime on the CPU, called like a model: tensor in, logits out."""

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        # Same thread count as PyTorch, so latencies are compared on equal terms.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        feed = {self.input_name: np.ascontiguousarray(x.detach().cpu().float().numpy())}
        return torch.from_numpy(self.session.run(None, feed)[0])


def batched_logits(predict, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [predict(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]
        )


def check_parity(name: str, torch_logits: torch.Tensor, ort_logits: torch.Tensor) -> dict[str, Any]:
    """Max |logit difference| and argmax agreement; an :class:`ExportError` past :data:`ATOL`."""
    diff = float((torch_logits - ort_logits).abs().max())
    same = bool((torch_logits.argmax(-1) == ort_logits.argmax(-1)).all())
    if not (diff <= ATOL and same):
        raise ExportError(
            f"ONNX export of {name!r} does not match PyTorch: max abs logit difference {diff:.3g} "
            f"(allowed {ATOL:g}), argmax {'identical' if same else 'differs'}"
        )
    return {"max_abs_logit_diff": diff, "argmax_identical": same, "n_checked": len(torch_logits)}


def export_and_check(
    model: nn.Module,
    name: str,
    x: torch.Tensor,
    out_dir: str | Path,
    warmup: int = 3,
    min_run_time: float = 0.2,
    threads: int = 1,
    clock: str = "wall",
) -> dict[str, Any]:
    """Export ``model`` to ``out_dir/NAME.onnx``, check it on ``x`` (normalised inputs) and time
    PyTorch and ONNX Runtime side by side in this process. The file is kept only if it matches."""
    out_dir = Path(out_dir)
    final = out_dir / f"{name}.onnx"
    tmp = out_dir / f".{name}.tmp.onnx"
    model = copy.deepcopy(model).cpu().eval()
    try:
        export_onnx(model, x, tmp, name)
        ort_model = OrtModel(tmp, threads)
        parity = check_parity(name, batched_logits(model, x), batched_logits(ort_model, x))
        # Both runtimes are timed in turn in one process: their ratio is steadier than either.
        record = {
            "file": f"{out_dir.name}/{final.name}",
            "size_bytes": size_bytes(tmp),
            **parity,
            "pytorch": _speed(model, x, warmup, min_run_time, threads, clock),
            "onnxruntime": _speed(ort_model, x, warmup, min_run_time, threads, clock),
        }
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)
    pt, rt = record["pytorch"]["latency_ms_b1"], record["onnxruntime"]["latency_ms_b1"]
    record["onnxruntime_speedup_b1"] = pt / rt
    return record


def _speed(
    predict, x: torch.Tensor, warmup: int, min_run_time: float, threads: int, clock: str
) -> dict[str, Any]:
    s = measure_speed(predict, x, warmup, min_run_time, threads, clock)
    return {k: s[k] for k in ("latency_ms_b1", "throughput_b256", "threads", "clock")}
