"""``kdlens export RUN --model NAME``: a model of a run folder as an ONNX file, checked and timed.

A float model is exported and checked against PyTorch (:mod:`kdlens.deploy.onnx_export`); an int8
model becomes an int8 ONNX model checked against the PyTorch int8 one
(:mod:`kdlens.deploy.onnx_int8`). The record goes to ``export/NAME.json`` and to metrics.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from kdlens.deploy.onnx_export import ExportError, export_and_check
from kdlens.deploy.onnx_int8 import export_int8


def export_run_model(run_dir: str | Path, name: str = "kd", fmt: str = "onnx") -> dict[str, Any]:
    """``kdlens export``: ``RUN_DIR/export/NAME.onnx``, checked on the test split; the check and
    both runtimes' timings go to ``export/NAME.json`` and to ``metrics.json`` under ``onnx``.

    An int8 model (``kd_int8``) becomes an int8 ONNX model checked against the PyTorch int8 one
    and measured beside its fp32 source: see :mod:`kdlens.deploy.onnx_int8`."""
    from kdlens.run import load_run

    if fmt != "onnx":
        raise ExportError(f"unknown export format {fmt!r}; supported: onnx")
    run = load_run(run_dir)
    record = run.records.get(name)
    if record is not None and record.format in ("torch_int8", "onnx"):
        return _export_int8(run, name)
    model = run.load_model(name)
    x_test = run.normalizer(run.tensors("test")[0])
    cfg = run.config.deploy
    folder = run.folder
    folder.write = True
    with folder.locked():
        record = export_and_check(
            model,
            name,
            x_test,
            folder.export,
            cfg.timing_warmup,
            cfg.timing_seconds,
            cfg.timing_threads or torch.get_num_threads(),
            cfg.timing_clock,
        )
        _save_record(folder, name, record)
    return record


def _export_int8(run, name: str) -> dict[str, Any]:
    folder = run.folder
    folder.write = True
    with folder.locked():
        record = export_int8(run, name)
        _save_record(folder, name, record)
    return record


def _save_record(folder, name: str, record: dict[str, Any]) -> None:
    folder.write_json(folder.export / f"{name}.json", record)
    if folder.metrics.is_file():
        metrics = folder.read_json(folder.metrics)
        if name in metrics.get("models", {}):
            metrics["models"][name]["onnx"] = record
            folder.write_json(folder.metrics, metrics)
