"""Shipping the student: ONNX export, int8 quantization, pruning, and the deploy stage of a run."""

from kdlens.deploy.onnx_export import ATOL, ExportError, OrtModel, export_and_check, export_onnx
from kdlens.deploy.prune import channel_sparsity, make_permanent, prune_model, weight_sparsity
from kdlens.deploy.quantize import quantization_method, quantize_dynamic_int8

__all__ = [
    "ATOL",
    "ExportError",
    "OrtModel",
    "channel_sparsity",
    "export_and_check",
    "export_onnx",
    "make_permanent",
    "prune_model",
    "quantization_method",
    "quantize_dynamic_int8",
    "weight_sparsity",
]
