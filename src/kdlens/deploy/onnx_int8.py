"""``kdlens export RUN --model kd_int8``: the run's int8 student as an int8 ONNX model.

A linear-only student's int8 copy is PyTorch dynamic quantization, which has no ONNX export (its
packed int8 kernels are not ONNX operators). So the fp32 source is exported and quantized by ONNX
Runtime's own dynamic quantizer, the same scheme (per-tensor int8 weights, activations quantized
per batch); the result is kept only if its predictions agree with the PyTorch int8 model on at
least :data:`AGREEMENT_MIN` of the test split. A conv student's int8 copy already is an ONNX
Runtime static int8 model (written by the deploy stage): it is measured, not rebuilt.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from kdlens.deploy.onnx_export import ExportError, OrtModel, batched_logits, export_onnx
from kdlens.deploy.quantize import ORT_STATIC, quantize_onnx_dynamic
from kdlens.evaluate.compression import measure_speed, size_bytes

AGREEMENT_MIN = 0.99  # share of test examples where the ONNX and PyTorch int8 models agree
ORT_DYNAMIC = "onnxruntime-dynamic-int8"


def _agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(-1) == b.argmax(-1)).float().mean())


def export_int8(run, name: str) -> dict[str, Any]:
    """Write ``RUN/export/NAME.onnx`` for the int8 model ``name`` of the reopened ``run`` and
    measure it beside its fp32 source; returns the record (see the module docstring)."""
    record = run.records[name]
    source = record.derived_from
    if source is None or source not in run.records:
        raise ExportError(f"model {name!r} does not say which model it was quantized from")
    folder = run.folder
    cfg = run.config.deploy
    threads = cfg.timing_threads or torch.get_num_threads()
    x = run.normalizer(run.tensors("test")[0])
    fp32 = run.load_model(source)
    final = folder.onnx(name)

    def speed(predict) -> dict[str, Any]:
        s = measure_speed(
            predict, x, cfg.timing_warmup, cfg.timing_seconds, threads, cfg.timing_clock
        )
        return {k: s[k] for k in ("latency_ms_b1", "throughput_b256", "threads", "clock")}

    with tempfile.TemporaryDirectory() as tmp:
        fp32_path = export_onnx(fp32, x, Path(tmp) / f"{source}.onnx", source)
        fp32_ort = OrtModel(fp32_path, threads)
        out: dict[str, Any] = {"source": source, "n_checked": len(x)}
        if record.format == "torch_int8":
            candidate = Path(tmp) / f"{name}.onnx"
            quantize_onnx_dynamic(fp32_path, candidate)
            int8_ort = OrtModel(candidate, threads)
            pytorch_int8 = run.load_model(name)
            int8_logits = batched_logits(int8_ort, x)
            agreement = _agreement(int8_logits, batched_logits(pytorch_int8, x))
            if agreement < AGREEMENT_MIN:
                raise ExportError(
                    f"the int8 ONNX model of {name!r} agrees with the PyTorch int8 model on only "
                    f"{agreement:.1%} of the test split (at least {AGREEMENT_MIN:.0%} required); "
                    "nothing was written"
                )
            out.update(
                quantization=ORT_DYNAMIC,
                agreement_with_pytorch_int8=agreement,
                pytorch_int8=speed(pytorch_int8),
            )
        elif record.format == "onnx":
            candidate = run.path / record.weights  # the deploy stage's static int8 model
            int8_ort = OrtModel(candidate, threads)
            int8_logits = batched_logits(int8_ort, x)
            out.update(quantization=ORT_STATIC, agreement_with_pytorch_int8=None, pytorch_int8=None)
        else:
            raise ExportError(f"model {name!r} is not an int8 model")
        out.update(
            file=folder.relative(final),
            size_bytes=size_bytes(candidate),
            agreement_with_fp32=_agreement(int8_logits, batched_logits(fp32, x)),
            onnxruntime=speed(int8_ort),
            fp32={"size_bytes": size_bytes(fp32_path), "onnxruntime": speed(fp32_ort)},
        )
        if candidate != final:
            final.parent.mkdir(parents=True, exist_ok=True)
            folder.write_bytes(final, candidate.read_bytes())
    return out
