"""int8 quantization of a trained student, on the CPU.

* Linear-only students (MLPs): PyTorch dynamic quantization (int8 weights, activations quantized
  on the fly per batch). No calibration data, no model surgery, and any ``nn.Linear`` qualifies.
* Students with convolutions: ONNX Runtime static quantization (QDQ, per-channel int8 weights,
  activations calibrated on training examples). PyTorch's eager static quantization would need
  QuantStub/DeQuantStub and hand-written layer fusion in every model, and its graph-mode successor
  lives outside torch (torchao); ONNX Runtime's quantizer works on any model that exports, and the
  result is the file one would ship anyway.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch import nn

# How int8 weights are stored and rebuilt belongs to the run folder; quantizing is deploy's.
from kdlens.deploy.onnx_export import quiet
from kdlens.weights import (  # noqa: F401  (re-exported)
    load_dynamic_int8,
    quantize_dynamic_int8,
    save_dynamic_int8,
)

TORCH_DYNAMIC = "torch-dynamic-int8"
ORT_STATIC = "onnxruntime-static-int8"


def has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())


def quantization_method(model: nn.Module) -> str:
    """Which int8 path suits ``model`` (see the module docstring for why)."""
    return ORT_STATIC if has_conv(model) else TORCH_DYNAMIC


class _Calibration:
    """ONNX Runtime's CalibrationDataReader protocol over a tensor of normalised examples."""

    def __init__(self, input_name: str, x: torch.Tensor, batch_size: int = 64):
        self._batches = iter(
            [{input_name: x[i : i + batch_size].numpy()} for i in range(0, len(x), batch_size)]
        )

    def get_next(self):
        return next(self._batches, None)


def quantize_onnx_static(
    fp32_path: str | Path, out_path: str | Path, calibration: torch.Tensor
) -> None:
    """Static int8 ONNX model from an fp32 one, activation ranges calibrated on ``calibration``."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    session = ort.InferenceSession(str(fp32_path), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # Shape inference and graph clean-up first, as ONNX Runtime's quantizer asks.
        prepared = Path(tmp) / "prepared.onnx"
        with quiet():
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_static(
                str(prepared),
                str(out_path),
                _Calibration(input_name, calibration.float().cpu()),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )


def quantize_onnx_dynamic(fp32_path: str | Path, out_path: str | Path) -> None:
    """Dynamic int8 ONNX model from an fp32 one: int8 weights, activations quantized per batch.

    The ONNX twin of PyTorch's dynamic quantization (what a linear-only student's int8 copy is):
    per-tensor symmetric int8 weights, uint8 activations whose range is taken from each batch.
    No calibration data.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        with quiet():
            quant_pre_process(str(fp32_path), str(prepared))
            quantize_dynamic(
                str(prepared),
                str(out_path),
                weight_type=QuantType.QInt8,
                per_channel=False,  # as PyTorch's dynamic int8 Linear
                reduce_range=False,
            )
