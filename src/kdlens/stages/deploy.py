"""Stage 6: measure every model, then prune, quantize and export the distilled student, adding
models such as ``kd_pruned50`` and ``kd_int8`` (role ``deployed``) to the run.

Pruning fine-tunes train through :func:`kdlens.train.train_stage` in every process (resumable,
under torchrun); quantizing, timing and exporting happen in the main process only.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlens import distributed
from kdlens.config import TrainConfig
from kdlens.deploy.onnx_export import OrtModel, batched_logits, export_and_check, export_onnx
from kdlens.deploy.prune import (
    channel_sparsity,
    conv_layers,
    make_permanent,
    prune_model,
    weight_sparsity,
)
from kdlens.deploy.quantize import (
    ORT_STATIC,
    TORCH_DYNAMIC,
    quantization_method,
    quantize_dynamic_int8,
    quantize_onnx_static,
    save_dynamic_int8,
)
from kdlens.distill import Distiller, build_distiller
from kdlens.evaluate import classification_metrics
from kdlens.evaluate.compression import (
    count_nonzero_parameters,
    flops_per_example,
    measure_speed,
    ratios,
    size_bytes,
)
from kdlens.models import count_parameters
from kdlens.run import ModelRecord, RunContext, select
from kdlens.train import train_stage
from kdlens.utils import set_seed
from kdlens.weights import save_weights

log = logging.getLogger("kdlens")

NAME = "deploy"
MAIN_ONLY = False  # pruning fine-tunes train in every process; the rest is the main one's
CALIBRATION_EXAMPLES = 512
DEPENDS_ON = ("seed", "data", "teacher", "student", "distill", "deploy.finetune_epochs",
              "deploy.finetune_lr")  # fmt: skip


@dataclass
class Artifact:
    """One deployable model: how to run it, the file it ships as, and the float graph it counts."""

    name: str
    predict: Callable[[torch.Tensor], torch.Tensor]
    file: Path
    # FLOPs are counted on the float model: quantized kernels are invisible to the counter.
    float_model: nn.Module
    runtime: str = "pytorch"


def student_name(ctx: RunContext) -> str:
    """The model deploy compresses: the distilled student."""
    return select(ctx.records, role="student", trained_with="teacher")[0]


def run(ctx: RunContext) -> None:
    """Run after the evaluate stage; reads and adds to ``ctx``."""
    cfg = ctx.config.deploy
    start = time.perf_counter()
    student = student_name(ctx)
    deploy_info: dict[str, Any] = {}
    # Every process takes part in the fine-tunes; only the main one goes on to measure.
    pruned = _prune_all(ctx, student) if cfg.prune else []
    if not distributed.is_main():
        return
    x_test = ctx.normalizer(ctx.tensors("test")[0])  # (N, ...) normalised, on the CPU
    artifacts = {
        name: _float_artifact(ctx, name, ctx.models[name])
        for name in ctx.models
        if name in ctx.metrics["models"] and ctx.records[name].format == "safetensors"
    }
    if cfg.prune:
        deploy_info["pruning"] = pruned
    if cfg.quantize:
        deploy_info["quantization"] = _quantize_all(ctx, artifacts, student)
    _measure_all(ctx, artifacts, x_test)
    if cfg.export == "onnx":
        _export_all(ctx, artifacts, x_test)
    models = ctx.metrics["models"]
    summary = {"teacher_vs_student": ratios(models["teacher"], models[student])}
    if f"{student}_int8" in models:
        summary["student_vs_int8"] = ratios(models[student], models[f"{student}_int8"])
    ctx.metrics.setdefault("summary", {}).update(summary)
    deploy_info["files"] = _save_table_and_figures(ctx, deploy_info.get("pruning"))
    ctx.metrics["deploy"] = deploy_info
    ctx.timings["deploy"] = time.perf_counter() - start


def _threads(ctx) -> int:
    return ctx.config.deploy.timing_threads or torch.get_num_threads()


def _cpu(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model).cpu().eval()


def _float_artifact(ctx: RunContext, name: str, model: nn.Module) -> Artifact:
    cpu = _cpu(model)
    return Artifact(name, cpu, ctx.folder.weights(name), cpu)


def _add_model(
    ctx: RunContext, artifact: Artifact, extra: dict[str, Any], x_test: torch.Tensor | None = None
) -> None:
    """Evaluate a new model on the test split, as the evaluate stage does for the trained ones."""
    x = ctx.normalizer(ctx.tensors("test")[0]) if x_test is None else x_test
    logits = batched_logits(artifact.predict, x)
    y = ctx.tensors("test")[1]
    m = classification_metrics(logits, y, ctx.test_logits["teacher"])
    ctx.test_logits[artifact.name] = logits
    ctx.metrics["models"][artifact.name] = {**m, **extra}


# -- pruning ------------------------------------------------------------------------------------


def _pct(s: float) -> str:
    return f"{100 * s:g}".replace(".", "p")


def _prune_all(ctx: RunContext, student: str) -> list[dict[str, Any]]:
    """Every sparsity x structure: prune the student, fine-tune with KD and with hard labels."""
    cfg = ctx.config.deploy
    structures = ["unstructured"]
    if cfg.prune_channels and conv_layers(ctx.models[student]):
        structures.append("channels")
    main = distributed.is_main()
    base = ctx.metrics["models"][student]
    source = ctx.records[student]
    rows = []
    for structure in structures:
        prefix = "pruned" if structure == "unstructured" else "chpruned"
        for target in cfg.prune:
            row: dict[str, Any] = {
                "structure": structure,
                "target_sparsity": target,
                "unpruned": {k: base[k] for k in ("accuracy", "fidelity")},
            }
            for finetune in ("none", "kd", "hard"):
                name = (
                    f"{student}_{prefix}{_pct(target)}"
                    + {"none": "_noft", "kd": "", "hard": "_hard"}[finetune]
                )
                model, seconds = _pruned_student(ctx, student, name, target, structure, finetune)
                if not main:
                    continue
                achieved = (weight_sparsity if structure == "unstructured" else channel_sparsity)(
                    model
                )
                extra = {
                    "params": count_parameters(model),
                    "nonzero_params": count_nonzero_parameters(model),
                    "stage": "pruned",
                    "source": student,
                    "structure": structure,
                    "sparsity": achieved["sparsity"],
                    "finetune": finetune,
                    "train_seconds": seconds,
                    "best_epoch": 0,
                }
                art = _float_artifact(ctx, name, model)
                _add_model(ctx, art, extra)
                m = ctx.metrics["models"][name]
                row[finetune] = {"name": name, "accuracy": m["accuracy"], "fidelity": m["fidelity"]}
                row["achieved_sparsity"] = achieved["sparsity"]
                if finetune == "none":  # pruning alone: a row of the curve, not a model to ship
                    del ctx.metrics["models"][name], ctx.test_logits[name]
                    continue
                save_weights(model, art.file)
                ctx.add_model(
                    ModelRecord(
                        name,
                        role="deployed",
                        family=source.family,
                        trained_with="teacher" if finetune == "kd" else "labels",
                        derived_from=student,
                        twin=student,
                        spec=source.spec,
                        weights=ctx.folder.relative(art.file),
                        format="safetensors",
                        source="derived",
                    ),
                    model,
                )
                log.info(
                    "%s: sparsity %.3f, accuracy %.4f", name, achieved["sparsity"], m["accuracy"]
                )
            rows.append(row)
    return rows


def _pruned_student(
    ctx: RunContext, student: str, name: str, target: float, structure: str, finetune: str
) -> tuple[nn.Module, float]:
    """A pruned copy of the student; masks stay fixed while fine-tuning, then become permanent.

    The KD fine-tune uses the run's distillation method and settings (``distill.*``).
    """
    cfg = ctx.config.deploy
    model = prune_model(copy.deepcopy(ctx.models[student]), target, structure)
    seconds = 0.0
    if finetune != "none":
        train_cfg: TrainConfig = ctx.config.student.train.model_copy(
            update={"epochs": cfg.finetune_epochs, "lr": cfg.finetune_lr}
        )
        seed = ctx.config.seed + 2  # the same batches for both fine-tunes: only the loss differs
        set_seed(seed)
        if finetune == "kd":
            distiller = build_distiller(
                ctx.config.distill,
                model,
                ctx.models["teacher"],
                ctx.dataset.input_shape,
                num_examples=len(ctx.student_data[1]),
            )
        else:
            distiller = Distiller(model)
        # The masked (still re-parametrised) model is what the fine-tune saves and resumes; the
        # permanent copy is saved under the model's own name by the caller.
        record = ModelRecord(f"{name}_finetune", role="deployed", family="pruned")
        result = train_stage(
            ctx,
            record,
            distiller,
            train_cfg,
            seed,
            ctx.student_data,
            DEPENDS_ON + ("deploy.prune",),
            keep=False,
        )
        seconds = result.seconds
    return make_permanent(model).eval(), seconds


# -- quantization -------------------------------------------------------------------------------


def _quantize_all(ctx: RunContext, artifacts: dict[str, Artifact], student: str) -> dict[str, Any]:
    """int8 copies of the distilled student and of its KD-fine-tuned pruned versions."""
    method = quantization_method(ctx.models[student])
    sources = [student] + select(
        ctx.records, role="deployed", derived_from=student, trained_with="teacher"
    )
    x_cal = ctx.normalizer(ctx.tensors("train")[0][:CALIBRATION_EXAMPLES])
    for source in sources:
        name = f"{source}_int8"
        float_model = artifacts[source].float_model
        if method == TORCH_DYNAMIC:
            q = quantize_dynamic_int8(float_model)
            file = ctx.folder.weights(name, int8=True)
            save_dynamic_int8(q, file)
            art = Artifact(name, lambda x, q=q: q(x), file, float_model)
        else:
            file = ctx.folder.onnx(name)
            with tempfile.TemporaryDirectory() as tmp:
                fp32 = export_onnx(float_model, x_cal, Path(tmp) / f"{source}.onnx", source)
                quantize_onnx_static(fp32, file, x_cal)
            art = Artifact(name, OrtModel(file, _threads(ctx)), file, float_model, "onnxruntime")
        src = ctx.metrics["models"][source]
        extra = {
            "params": src["params"],
            "nonzero_params": src.get("nonzero_params", src["params"]),
            "stage": "int8",
            "source": source,
            "quantization": method,
            "train_seconds": 0.0,
            "best_epoch": 0,
        }
        _add_model(ctx, art, extra)
        artifacts[name] = art
        ctx.add_model(
            ModelRecord(
                name,
                role="deployed",
                family=ctx.records[source].family,
                derived_from=source,
                twin=source,
                spec=ctx.records[source].spec,
                weights=ctx.folder.relative(file),
                format="torch_int8" if method == TORCH_DYNAMIC else "onnx",
                source="derived",
            )
        )
    why = {
        TORCH_DYNAMIC: "linear-only student: PyTorch dynamic quantization (int8 weights, no calibration)",
        ORT_STATIC: "conv student: ONNX Runtime static QDQ quantization, calibrated on training examples",
    }[method]
    return {
        "method": method,
        "why": why,
        "calibration_examples": len(x_cal) if method == ORT_STATIC else 0,
    }


# -- measurement and export ---------------------------------------------------------------------


def _measure_all(ctx, artifacts: dict[str, Artifact], x_test: torch.Tensor) -> None:
    cfg = ctx.config.deploy
    for name, art in artifacts.items():
        m = ctx.metrics["models"][name]
        m["size_bytes"] = size_bytes(art.file)
        m["flops"] = flops_per_example(art.float_model, x_test[:1])
        m.setdefault("nonzero_params", count_nonzero_parameters(art.float_model))
        speed = measure_speed(
            art.predict,
            x_test,
            cfg.timing_warmup,
            cfg.timing_seconds,
            _threads(ctx),
            cfg.timing_clock,
        )
        m.update({k: speed[k] for k in ("latency_ms_b1", "throughput_b256", "threads", "clock")})
        m["runtime"] = art.runtime


def _export_all(ctx, artifacts: dict[str, Artifact], x_test: torch.Tensor) -> None:
    """ONNX files for the float students (the int8 ONNX ones already are)."""
    cfg = ctx.config.deploy
    for name, art in artifacts.items():
        m = ctx.metrics["models"][name]
        record = ctx.records[name]
        distilled = record.trained_with == "teacher" and record.format == "safetensors"
        if not distilled or art.runtime != "pytorch":
            continue  # the models one would ship: distilled, float (int8 ONNX files already are)
        m["onnx"] = export_and_check(
            art.float_model,
            name,
            x_test,
            ctx.folder.export,
            cfg.timing_warmup,
            cfg.timing_seconds,
            _threads(ctx),
            cfg.timing_clock,
        )


# -- saved results ------------------------------------------------------------------------------

TABLE_COLUMNS = [
    "name",
    "stage",
    "source",
    "accuracy",
    "fidelity",
    "params",
    "nonzero_params",
    "size_bytes",
    "flops",
    "latency_ms_b1",
    "throughput_b256",
    "runtime",
]


def compression_table(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rows teacher -> students -> pruned -> int8, with size and speed relative to the teacher."""
    order = {"teacher": 0, "student": 1, "pruned": 2, "int8": 3}
    rows = []
    for name, m in models.items():
        stage = m.get("stage") or ("teacher" if m.get("role") == "teacher" else "student")
        row = {c: m.get(c) for c in TABLE_COLUMNS}
        row.update(name=name, stage=stage, source=m.get("source"))
        rows.append(row)
    rows.sort(key=lambda r: order.get(r["stage"], 9))
    teacher = models["teacher"]
    for row in rows:
        row["size_vs_teacher"] = (
            row["size_bytes"] / teacher["size_bytes"]
            if row.get("size_bytes") and teacher.get("size_bytes")
            else None
        )
    return {"columns": [*TABLE_COLUMNS, "size_vs_teacher"], "rows": rows}


def _save_table_and_figures(
    ctx: RunContext, pruning: list[dict[str, Any]] | None
) -> dict[str, str]:
    from kdlens.deploy import figures  # matplotlib: imported only when a run gets this far

    folder = ctx.folder
    folder.figures.mkdir(exist_ok=True)
    for name, m in ctx.metrics["models"].items():
        if name in ctx.records:
            m.update(ctx.records[name].summary())
    table = compression_table(ctx.metrics["models"])
    folder.write_json(folder.compression_table, table)
    files = {"table": folder.relative(folder.compression_table)}
    files["accuracy_vs_size"] = folder.relative(folder.compression_plot)
    if pruning:
        folder.write_json(folder.pruning_table, pruning)
        files["pruning"] = folder.relative(folder.pruning_table)
        files["pruning_plot"] = folder.relative(folder.pruning_plot)
    figures.save_plots(folder, table, pruning)
    return files
