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

import numpy as np
import torch
from torch import nn

from kdlens import distributed
from kdlens.config import ModelSpec, RunConfig, save_config
from kdlens.data import (
    Dataset,
    Split,
    check_text_teacher,
    dataset_from_config,
    make_split,
    save_dataset_record,
)
from kdlens.distill import build_distiller
from kdlens.distill.transfer import student_rows, teacher_rows
from kdlens.errors import CheckpointError, ConfigError, KdlensError
from kdlens.evaluate.seeds import SeedRun, summarize_seeds
from kdlens.run import RunContext, RunFolder, load_run, load_weights, read_config
from kdlens.run.build import create_bare, is_loaded, runs_on_inputs
from kdlens.run.context import EVAL_BATCH
from kdlens.run.folder import SEEDS_KIND
from kdlens.run.inputs import (
    fit_normalizer,
    image_only_augmentation,
    memory_notes,
    model_inputs,
)
from kdlens.run.teachers import check_loaded_teacher, check_teacher_use
from kdlens.stages import STAGES
from kdlens.tracking import TensorBoardLogger, Tracker
from kdlens.train import check_precision, config_values
from kdlens.utils import resolve_device

log = logging.getLogger("kdlens")

__all__ = [
    "EVAL_BATCH",
    "RunContext",
    "check_model_fits",
    "prepare",
    "resume_run",
    "resume_seeds",
    "run",
    "run_seeds",
]


def check_model_fits(model: nn.Module, role: str, dataset: Dataset, device: torch.device) -> None:
    """One forward pass on two examples: the model must take the data's input shape and
    predict one logit per class, so teacher and student agree with the data and each other."""
    if not runs_on_inputs(model):  # saved outputs: their shape was checked against the data
        return
    try:
        with torch.no_grad():
            out = model.eval()(dataset.x[:2].to(device))
    except KdlensError:
        raise
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
    """The model (a teacher with its checkpoint loaded), or one line saying why its arguments
    cannot build it."""
    try:
        if role == "teacher" and spec.checkpoint:
            bare = create_bare(
                spec.model, spec.model_args, ctx.dataset, ctx.normalizer, spec.preprocess.resize
            )
            load_weights(bare, spec.checkpoint, num_classes=ctx.dataset.num_classes)
            return ctx.build(spec, role, bare=bare)
        return ctx.build(spec, role)
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

    A teacher that comes complete (a checkpoint, ``sklearn:``, ``logits:``, an ``hf:`` folder
    with its classifier) is scored on the validation split here, before anything trains.
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
    config, notes = image_only_augmentation(config, dataset.kind)
    split = make_split(
        dataset, config.data.val_fraction, config.data.test_fraction, config.seed, config.data.limit
    )
    dataset = dataset.prepare(split.train)  # a table's encoder is fitted on the training split
    dataset = model_inputs(dataset, config.teacher.model)  # text: the teacher's token ids
    normalizer = fit_normalizer(dataset, split.train)
    if resume and folder.split.is_file() and Split.load(folder.split) != split:
        raise KdlensError(
            f"cannot resume {folder.path}: the data or its split changed since the run began"
        )
    ctx = RunContext(config, dataset, split, normalizer, device, folder, progress, resume=resume)
    ctx.notes.extend(notes + memory_notes(dataset, config.data))
    ctx.timings["data"] = time.perf_counter() - start
    # Build both architectures now so a bad model name or argument fails before any training.
    teacher = _build(ctx, config.teacher, "teacher")
    student = _build(ctx, config.student, "student")
    check_model_fits(student, "student", dataset, device)
    _check_trainable(student, "student")
    if is_loaded(config.teacher):
        ctx.models["teacher"] = teacher.eval()
    else:
        _check_trainable(teacher, "teacher")
    check_model_fits(teacher, "teacher", dataset, device)
    check_teacher_use(config, teacher)
    ctx.teacher_data, ctx.teacher_index = _split_rows(teacher_rows(ctx))
    ctx.student_data, ctx.student_index = _split_rows(student_rows(ctx))
    build_distiller(
        config.distill,
        ctx.build(config.student),
        teacher,
        dataset.input_shape,
        num_examples=len(ctx.student_data[1]),
    )
    if "teacher" in ctx.models:  # before any student learns from it
        ctx.loaded_teacher = check_loaded_teacher(ctx, teacher)
    return ctx


def _split_rows(rows):
    x, y, index = rows
    return (x, y), index


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
    return _walk(ctx, overwrite, tensorboard, only, total, on_epoch, tracker, twins)


def _walk(
    ctx: RunContext,
    overwrite: bool,
    tensorboard: bool,
    only: tuple[str, ...] | None,
    total: float,
    on_epoch: Callable[[str, dict[str, float]], Any] | None = None,
    tracker: Tracker | None = None,
    twins: bool = True,
) -> dict[str, Any]:
    """Start (or continue) the prepared run's folder and walk the stages; see :func:`run`."""
    resume, folder = ctx.resume, ctx.folder
    with folder.locked():
        # Checked again under the lock: another process may have written the folder meanwhile.
        if resume:
            check_resume(folder, ctx.config)  # as prepare adjusted it to the data
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
            tracker.start(ctx.config, folder)
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
    tracker_for: Callable[[int], Tracker | None] | None = None,
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` with the config it started with; returns its metrics.

    ``tracker`` logs the continued run; for a multi-seed folder ``tracker_for(k)`` gives seed
    ``k``'s tracker instead (see :func:`run_seeds`).

    ``overrides`` (``key=value``) change that config, e.g. a lower ``train.lr`` for the stage
    that diverged; one that changes what a finished stage was trained with is refused, and a
    refused resume changes no file.
    """
    folder = RunFolder(run_dir, write=False)
    if not folder.path.is_dir() or not folder.is_run():
        raise KdlensError(f"cannot resume {folder.path}: it is not a kdlens run folder")
    if folder.is_seeds():
        return resume_seeds(folder.path, overrides, progress, tracker_for=tracker_for)
    config = read_config(folder, overrides)
    check_resume(folder, config)  # before the data is loaded: the cheapest refusal first
    return run(config, folder.path, progress=progress, resume=True, tracker=tracker)


# -- several seeds ------------------------------------------------------------------------------


def run_seeds(
    config: RunConfig,
    out_dir: str | Path,
    seeds: int,
    overwrite: bool = False,
    progress: bool = False,
    tensorboard: bool = False,
    resume: bool = False,
    tracker_for: Callable[[int], Tracker | None] | None = None,
) -> dict[str, Any]:
    """``kdlens run --seeds N``: N complete runs (teacher, split and students each) with seeds
    ``config.seed + k`` into ``out_dir/seed-<k>/``, then ``summary.json`` and ``report.html`` at
    ``out_dir`` (see :func:`kdlens.evaluate.seeds.summarize_seeds`); returns the summary.

    ``resume=True`` continues a multi-seed folder: finished seeds (those with a metrics.json) are
    read, not rerun; an interrupted one is resumed; the summary is written anew. Under torchrun
    every process runs every seed and the main one returns the summary, the others ``{}``.
    ``tracker_for(k)`` gives seed ``k``'s tracker (one MLflow run per seed), or None.
    """
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1 (got {seeds})")
    total = time.perf_counter()
    main = distributed.launched_main()
    folder = RunFolder(out_dir, write=main)
    configs = [config.model_copy(update={"seed": config.seed + k}) for k in range(seeds)]
    first, first_start = None, time.perf_counter()
    if not resume:
        if folder.write:
            folder.check_target(overwrite)
        # Every input error surfaces before the folder is written: seed 0 checks the config.
        first = prepare(configs[0], folder.seed_folder(0).path, overwrite=True, progress=progress)
    with folder.locked():
        if resume:
            if not folder.is_seeds():
                raise KdlensError(f"cannot resume {folder.path}: it is not a multi-seed folder")
        elif folder.write:
            folder.check_target(overwrite)
            folder.start(config.model_dump(mode="json"), kind=SEEDS_KIND, seeds=seeds)
        if folder.write:
            save_config(config, folder.config)  # on resume: with any --set applied
        for k, cfg in enumerate(configs):
            seed_folder = folder.seed_folder(k)
            if seed_folder.metrics.is_file():
                log.info(
                    "seed %d (%s) finished earlier: read, not rerun", cfg.seed, seed_folder.path
                )
                continue
            log.info("seed %d (%d of %d): %s", cfg.seed, k + 1, seeds, seed_folder.path)
            tracker = tracker_for(k) if tracker_for is not None else None
            if first is not None and k == 0:
                _walk(first, True, tensorboard, None, first_start, tracker=tracker)
                first = None
                continue
            started = seed_folder.path.is_dir() and seed_folder.is_run()
            run(
                cfg,
                seed_folder.path,
                overwrite=not started,
                progress=progress,
                tensorboard=tensorboard,
                resume=started,
                tracker=tracker,
            )
        if not folder.write:
            return {}
        summary = summarize_seeds(
            [_read_seed(folder, k, cfg.seed) for k, cfg in enumerate(configs)]
        )
        summary["timings"] = {"total": time.perf_counter() - total}
        folder.write_json(folder.summary, summary)
        from kdlens.report.seeds import render_seeds_html

        title = f"kdlens report: {folder.path.resolve().name} ({seeds} seeds)"
        folder.write_bytes(folder.report, render_seeds_html(summary, title).encode("utf-8"))
        return summary


def resume_seeds(
    run_dir: str | Path,
    overrides: list[str] | None = None,
    progress: bool = False,
    tracker_for: Callable[[int], Tracker | None] | None = None,
) -> dict[str, Any]:
    """Continue the multi-seed folder ``run_dir`` (see :func:`run_seeds`); returns its summary."""
    folder = RunFolder(run_dir, write=False)
    seeds = folder.read_marker().get("seeds")
    if not isinstance(seeds, int) or seeds < 1:
        raise CheckpointError(f"{folder.marker} does not say how many seeds the run has")
    config = read_config(folder, overrides)
    return run_seeds(
        config, folder.path, seeds, progress=progress, resume=True, tracker_for=tracker_for
    )


def _read_seed(folder: RunFolder, k: int, seed: int) -> SeedRun:
    """What a finished seed saved: metrics, and the test split's ids, labels and logits."""
    from safetensors.torch import load_file

    seed_folder = folder.seed_folder(k)
    reopened = load_run(seed_folder.path, need_metrics=True)
    logits = {}
    if seed_folder.test_logits.is_file():
        logits = load_file(str(seed_folder.test_logits))
    report = seed_folder.report
    return SeedRun(
        seed=seed,
        folder=folder.relative(seed_folder.path),
        metrics=reopened.metrics,
        test_ids=np.asarray(reopened.split.test, np.int64),
        y=reopened.tensors("test")[1],
        logits=logits,
        report=folder.relative(report) if report.is_file() else None,
    )
