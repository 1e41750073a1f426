"""``kdlens run``: check everything, then walk the stages (``kdlens.stages.STAGES``) in order.

Everything that can fail on the user's input (config, data, model arguments, teacher checkpoint,
output folder) is checked in :func:`prepare`, before any file is written. A resume is a
transaction: the new config is checked completely, against the data and against what the
finished stages were trained with, before the folder changes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlens import distributed
from kdlens.config import ModelSpec, RunConfig, save_config
from kdlens.data import (
    Dataset,
    Normalizer,
    Split,
    check_text_teacher,
    dataset_from_config,
    make_split,
    save_dataset_record,
)
from kdlens.distill import build_distiller
from kdlens.distill.transfer import student_tensors, teacher_tensors
from kdlens.errors import ConfigError, KdlensError
from kdlens.run import RunContext, RunFolder, load_weights, read_config
from kdlens.run.context import EVAL_BATCH
from kdlens.stages import STAGES
from kdlens.tracking import TensorBoardLogger, Tracker
from kdlens.train import check_precision, config_values
from kdlens.utils import resolve_device

log = logging.getLogger("kdlens")

__all__ = ["EVAL_BATCH", "RunContext", "check_model_fits", "prepare", "resume_run", "run"]


def check_model_fits(model: nn.Module, role: str, dataset: Dataset, device: torch.device) -> None:
    """One forward pass on two examples: the model must take the data's input shape and
    predict one logit per class, so teacher and student agree with the data and each other."""
    try:
        with torch.no_grad():
            out = model.eval()(dataset.x[:2].to(device))
    except Exception as e:  # a user's model can fail in any way; report it in one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KdlensError(
            f"the {role} cannot take inputs of shape {dataset.input_shape} ({first})"
        ) from None
    if not isinstance(out, torch.Tensor) or out.shape != (len(dataset.x[:2]), dataset.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise KdlensError(
            f"the {role} outputs {shape} for a batch of 2 but the data has "
            f"{dataset.num_classes} classes; expected (2, {dataset.num_classes})"
        )


def _build(ctx: RunContext, spec: ModelSpec, role: str) -> nn.Module:
    """The model, or one line saying why its arguments cannot build it."""
    try:
        return ctx.build(spec)
    except KdlensError:
        raise
    except Exception as e:  # a factory can fail in any way on bad arguments
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(
            f"{role}.model_args: model {spec.model!r} cannot be built with "
            f"{dict(spec.model_args)} ({type(e).__name__}: {first})"
        ) from None


def _check_trainable(model: nn.Module, role: str) -> None:
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigError(f"the {role} has no trainable parameters; nothing could be learned")


def prepare(
    config: RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = False,
    resume: bool = False,
) -> RunContext:
    """Load data, split it, and check models and checkpoints: every user error surfaces here.

    Nothing is written; the returned context holds the run folder (not yet started).
    """
    device = distributed.setup(resolve_device(config.device))  # first: is_main() needs it
    folder = RunFolder(out_dir, write=distributed.is_main())
    if folder.write and not resume:  # the others would race rank 0 creating it
        folder.check_target(overwrite)
    for spec in (config.teacher, config.student):
        check_precision(spec.train.precision, device)
    start = time.perf_counter()
    dataset = dataset_from_config(config.data)
    check_text_teacher(dataset, config.teacher.model)
    split = make_split(
        dataset, config.data.val_fraction, config.data.test_fraction, config.seed, config.data.limit
    )
    dataset = dataset.prepare(split.train)  # a table's encoder is fitted on the training split
    normalizer = Normalizer.fit(dataset.x[torch.as_tensor(split.train)])
    if resume and folder.split.is_file() and Split.load(folder.split) != split:
        raise KdlensError(
            f"cannot resume {folder.path}: the data or its split changed since the run began"
        )
    ctx = RunContext(config, dataset, split, normalizer, device, folder, progress, resume=resume)
    ctx.timings["data"] = time.perf_counter() - start
    # Build both architectures now so a bad model name or argument fails before any training.
    teacher = _build(ctx, config.teacher, "teacher")
    student = _build(ctx, config.student, "student")
    check_model_fits(student, "student", dataset, device)
    _check_trainable(student, "student")
    if config.teacher.checkpoint:
        load_weights(teacher, config.teacher.checkpoint, num_classes=dataset.num_classes)
        ctx.models["teacher"] = teacher.eval()
    else:
        _check_trainable(teacher, "teacher")
    check_model_fits(teacher, "teacher", dataset, device)
    build_distiller(config.distill, ctx.build(config.student), teacher, dataset.input_shape)
    ctx.teacher_data = teacher_tensors(ctx)
    ctx.student_data = student_tensors(ctx)
    return ctx


def _start(ctx: RunContext, overwrite: bool) -> None:
    """Write the folder's first files: the marker (a fresh start), the config, split, normalisation."""
    folder = ctx.folder
    if not ctx.resume:
        folder.start(ctx.config.model_dump(mode="json"))
    else:
        folder.remove_temporaries()
        folder.make_dirs()
    if folder.write:
        save_config(ctx.config, folder.config)  # on resume: with any --set applied
        ctx.split.save(folder.split)
        save_dataset_record(ctx.dataset, folder.dataset_record)
        folder.write_json(folder.normalization, ctx.normalizer.to_dict())


def check_resume(folder: RunFolder, config: RunConfig) -> None:
    """Refuse a config that changes what a finished stage was trained with, naming both."""
    for stage, record in folder.finished_stages().items():
        inputs = record.get("inputs", {}) if isinstance(record, dict) else {}
        if not inputs:
            continue
        now = config_values(config, tuple(inputs))
        for key, before in inputs.items():
            if now.get(key) != before:
                raise ConfigError(
                    f"cannot resume {folder.path}: stage {stage!r} finished with {key}={before!r}; "
                    f"{key}={now.get(key)!r} would change what it was trained with "
                    "(start a new run with --out instead)"
                )


def run(
    config: RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = False,
    tensorboard: bool = False,
    resume: bool = False,
    only: tuple[str, ...] | None = None,
    on_epoch: Callable[[str, dict[str, float]], Any] | None = None,
    tracker: Tracker | None = None,
    twins: bool = True,
) -> dict[str, Any]:
    """Run the whole experiment and write the run folder; returns the metrics written.

    ``only`` names the stages to run (e.g. ``("teacher",)`` to train a teacher to share);
    default: all of :data:`kdlens.stages.STAGES`.

    ``on_epoch(model_name, epoch_record)`` is called after every training epoch of every model
    (a search reports the distilled student's validation accuracy to its pruner there); an
    exception it raises stops the run, leaving the folder as an interrupted run.
    ``tracker`` (e.g. :class:`kdlens.tracking.MlflowTracker`) logs the run elsewhere, from the
    main process. ``twins=False`` skips the distilled students' hard-label twins (``scratch``),
    for runs judged on the distilled student alone (a search's trials).

    ``tensorboard=True`` also writes TensorBoard event files to ``<out_dir>/tb/<model>``.
    ``resume=True`` continues the run in ``out_dir``: finished stages are reloaded, the
    interrupted one continues from its last saved epoch. Under torchrun every process walks the
    stages (training together); only the main one writes, and the others return ``{}``.
    """
    total = time.perf_counter()
    ctx = prepare(config, out_dir, overwrite=overwrite, progress=progress, resume=resume)
    folder = ctx.folder
    with folder.locked():
        # Checked again under the lock: another process may have written the folder meanwhile.
        if resume:
            check_resume(folder, config)
        elif folder.write:
            folder.check_target(overwrite)
        _start(ctx, overwrite)
        board = TensorBoardLogger(ctx.folder.tensorboard) if tensorboard else None
        tracker = tracker if distributed.is_main() else None
        # Loggers first: the epoch a callback stops the run on is still logged.
        ctx.on_epoch = _each(tracker, board, on_epoch)
        ctx.world_size = distributed.world_size()
        ctx.twins = twins
        if tracker is not None:
            tracker.start(config, folder)
        try:
            for stage in STAGES:
                if stage.MAIN_ONLY and not distributed.is_main():
                    continue
                if only is not None and stage.NAME not in only:
                    continue
                stage.run(ctx)
        except BaseException as e:
            if tracker is not None:
                tracker.stop(e)
            raise
        finally:
            if board is not None:
                board.close()
        if not distributed.is_main():
            return {}
        ctx.timings["total"] = time.perf_counter() - total
        for text in ctx.notes:
            log.warning("note: %s", text)
        metrics = ctx.metrics_document()
        folder.write_json(folder.metrics, metrics)
        if tracker is not None:
            tracker.finish(metrics, folder)
        return metrics


def _each(*callbacks: Callable[[str, dict[str, float]], Any] | None):
    """One ``on_epoch`` callback calling each given one in turn; None when none is given."""
    given = [c for c in callbacks if c is not None]
    if not given:
        return None

    def call(name: str, record: dict[str, float]) -> None:
        for callback in given:
            callback(name, record)

    return call


def resume_run(
    run_dir: str | Path,
    overrides: list[str] | None = None,
    progress: bool = False,
    tracker: Tracker | None = None,
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` with the config it started with; returns its metrics.

    ``overrides`` (``key=value``) change that config, e.g. a lower ``train.lr`` for the stage
    that diverged; one that changes what a finished stage was trained with is refused, and a
    refused resume changes no file.
    """
    folder = RunFolder(run_dir, write=False)
    if not folder.path.is_dir() or not folder.is_run():
        raise KdlensError(f"cannot resume {folder.path}: it is not a kdlens run folder")
    config = read_config(folder, overrides)
    check_resume(folder, config)  # before the data is loaded: the cheapest refusal first
    return run(config, folder.path, progress=progress, resume=True, tracker=tracker)
