"""``kdlens run``: teacher -> scratch student -> distilled student -> evaluation -> run folder.

Everything that can fail on the user's input (config, data, model arguments, teacher checkpoint,
output folder) is checked in :func:`prepare`, before any file is written.
"""

from __future__ import annotations

import logging
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

import kdlens
from kdlens import distributed
from kdlens.checkpointing import StageCheckpoint
from kdlens.checkpoints import load_weights, save_weights
from kdlens.config import ModelSpec, RunConfig, TrainConfig, save_config
from kdlens.data import (
    BatchLoader,
    Dataset,
    Normalizer,
    Split,
    create_dataset,
    is_augmenting,
    make_split,
)
from kdlens.deploy.stage import deploy
from kdlens.distill import Distiller, build_distiller, compute_logits
from kdlens.distill.transfer import student_tensors, teacher_tensors
from kdlens.errors import KdlensError, OutputError
from kdlens.evaluate import classification_metrics
from kdlens.evaluate.omitted import omitted_class_stage
from kdlens.explain.readable_stage import readable_stage
from kdlens.models import count_parameters, create_model
from kdlens.report import report_stage
from kdlens.tracking import TensorBoardLogger
from kdlens.train import TrainResult, check_precision, fit
from kdlens.utils import resolve_device, set_seed, write_json

log = logging.getLogger("kdlens")

EVAL_BATCH = 512


@dataclass
class RunContext:
    """What every stage of a run reads and adds to."""

    config: RunConfig
    dataset: Dataset
    split: Split
    normalizer: Normalizer
    device: torch.device
    out_dir: Path
    progress: bool = False
    models: dict[str, nn.Module] = field(default_factory=dict)
    test_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    train_results: dict[str, TrainResult] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    # Called as on_epoch(model_name, epoch_record) after every training epoch (e.g. TensorBoard).
    on_epoch: Callable[[str, dict[str, float]], Any] | None = None
    resume: bool = False  # continue the run in out_dir: skip finished stages, resume the others
    world_size: int = 1  # processes that trained together (torchrun)

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(getattr(self.split, part))
        return self.dataset.x[idx], self.dataset.y[idx]

    def eval_loader(self, part: str) -> BatchLoader:
        x, y = self.tensors(part)
        return BatchLoader(x, y, self.normalizer, EVAL_BATCH, device=self.device)

    def train_loader(
        self, cfg: TrainConfig, seed: int, data: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> BatchLoader:
        x, y = data if data is not None else self.tensors("train")
        return BatchLoader(
            x,
            y,
            self.normalizer,
            cfg.batch_size,
            shuffle=True,
            augment=cfg.augment,
            num_classes=self.dataset.num_classes,
            seed=seed,
            max_batches=cfg.max_batches,
            device=self.device,
            rank=distributed.rank(),
            world_size=distributed.world_size(),
        )

    def build(self, spec: ModelSpec) -> nn.Module:
        model = create_model(
            spec.model, self.dataset.input_shape, self.dataset.num_classes, **spec.model_args
        )
        return model.to(self.device)


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise KdlensError(f"output path {out_dir} exists and is not a folder")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise KdlensError(
            f"run folder {out_dir} already exists; pass --overwrite to replace it "
            f"(or --resume {out_dir} to continue it)"
        )
    parent = out_dir.parent if not out_dir.exists() else out_dir
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not _writable(parent):
        raise KdlensError(f"output folder {out_dir} is not writable")


def _writable(folder: Path) -> bool:
    """Try it: permission bits say nothing to root or about read-only mounts."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


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


def prepare(
    config: RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = False,
    resume: bool = False,
) -> RunContext:
    """Load data, split it, and check models and checkpoints: every user error surfaces here."""
    out = Path(out_dir)
    device = distributed.setup(resolve_device(config.device))  # first: is_main() needs it
    if distributed.is_main() and not resume:  # the others would race rank 0 creating it
        check_out_dir(out, overwrite)
    for spec in (config.teacher, config.student):
        check_precision(spec.train.precision, device)
    start = time.perf_counter()
    dataset = create_dataset(config.data.name, root=config.data.root, download=config.data.download)
    split = make_split(
        dataset, config.data.val_fraction, config.data.test_fraction, config.seed, config.data.limit
    )
    normalizer = Normalizer.fit(dataset.x[torch.as_tensor(split.train)])
    if resume and (out / "split.json").is_file() and Split.load(out / "split.json") != split:
        raise KdlensError(f"cannot resume {out}: the data or its split changed since the run began")
    ctx = RunContext(config, dataset, split, normalizer, device, out, progress, resume=resume)
    ctx.timings["data"] = time.perf_counter() - start
    # Build both architectures now so a bad model name or argument fails before any training.
    teacher = ctx.build(config.teacher)
    check_model_fits(ctx.build(config.student), "student", dataset, device)
    if config.teacher.checkpoint:
        load_weights(teacher, config.teacher.checkpoint, num_classes=dataset.num_classes)
        ctx.models["teacher"] = teacher.eval()
    check_model_fits(teacher, "teacher", dataset, device)
    transfer = student_tensors(ctx)
    build_distiller(
        config.distill, ctx.build(config.student), teacher, dataset.input_shape, len(transfer[1])
    )
    return ctx


def _start_folder(ctx: RunContext, overwrite: bool) -> None:
    if not distributed.is_main():
        return
    if ctx.out_dir.exists() and overwrite and not ctx.resume:
        shutil.rmtree(ctx.out_dir)
    try:
        (ctx.out_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {ctx.out_dir}: {e.strerror or e}") from None
    save_config(ctx.config, ctx.out_dir / "config.yaml")  # on resume: with any --set applied
    ctx.split.save(ctx.out_dir / "split.json")
    write_json(ctx.out_dir / "normalization.json", ctx.normalizer.to_dict())


def _train_stage(
    ctx: RunContext,
    name: str,
    distiller: Distiller,
    cfg: TrainConfig,
    seed: int,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    start = time.perf_counter()
    weights = ctx.out_dir / "checkpoints" / f"{name}.safetensors"
    ckpt = StageCheckpoint(
        weights.parent, name, cfg.checkpoint_every, ctx.resume, write=distributed.is_main()
    )
    done = ckpt.finished()
    distributed.agree(
        (done is not None, ctx.resume and ckpt.state_path.is_file()),
        f"{name}: the processes see different files in {ctx.out_dir}; "
        "resuming under torchrun needs the run folder on a file system all machines share",
    )
    if done is not None:  # resuming: this stage finished before the run stopped
        load_weights(distiller.student, weights)
        result = TrainResult(**done)
    else:
        result = fit(
            distiller,
            ctx.train_loader(cfg, seed, data),
            ctx.eval_loader("val"),
            cfg,
            desc=name,
            progress=ctx.progress,
            on_epoch=partial(ctx.on_epoch, name) if ctx.on_epoch else None,
            checkpoint=ckpt,
        )
    ctx.models[name] = distiller.student.eval()
    ctx.train_results[name] = result
    if done is None and distributed.is_main():
        save_weights(distiller.student, weights)
        write_json(ctx.out_dir / f"history_{name}.json", result.history)
        ckpt.mark_finished(asdict(result))
    ctx.timings[name] = time.perf_counter() - start
    log.info(
        "%s: trained in %.1fs (best epoch %d, val accuracy %.4f)",
        name,
        ctx.timings[name],
        result.best_epoch,
        result.best_val_accuracy,
    )


def train_teacher(ctx: RunContext) -> None:
    if "teacher" in ctx.models:  # loaded from a checkpoint
        if distributed.is_main():
            save_weights(ctx.models["teacher"], ctx.out_dir / "checkpoints" / "teacher.safetensors")
        log.info("teacher: loaded from %s", ctx.config.teacher.checkpoint)
        return
    set_seed(ctx.config.seed)
    _train_stage(
        ctx,
        "teacher",
        Distiller(ctx.build(ctx.config.teacher)),
        ctx.config.teacher.train,
        ctx.config.seed,
        teacher_tensors(ctx),
    )


def train_students(ctx: RunContext) -> None:
    """The same architecture, initialisation and batch order, once without and once with the teacher."""
    cfg, seed = ctx.config.student.train, ctx.config.seed + 1
    data = student_tensors(ctx)  # the transfer set
    set_seed(seed)
    _train_stage(ctx, "scratch", Distiller(ctx.build(ctx.config.student)), cfg, seed, data)

    set_seed(seed)
    distiller = build_distiller(
        ctx.config.distill,
        ctx.build(ctx.config.student),
        ctx.models["teacher"],
        ctx.dataset.input_shape,
        num_examples=len(data[1]),
    )
    if ctx.config.distill.cache_teacher_logits and not is_augmenting(cfg.augment):
        loader = BatchLoader(*data, ctx.normalizer, EVAL_BATCH, device=ctx.device)
        distiller.set_teacher_cache(compute_logits(ctx.models["teacher"], loader))
    _train_stage(ctx, "kd", distiller, cfg, seed, data)


def evaluate_models(ctx: RunContext) -> None:
    start = time.perf_counter()
    loader = ctx.eval_loader("test")
    for name, model in ctx.models.items():
        ctx.test_logits[name] = compute_logits(model, loader)
    y = loader.y
    teacher_logits = ctx.test_logits["teacher"]
    models: dict[str, dict[str, Any]] = {}
    for name, logits in ctx.test_logits.items():
        m = classification_metrics(logits, y, None if name == "teacher" else teacher_logits)
        m["params"] = count_parameters(ctx.models[name])
        result = ctx.train_results.get(name)
        m["train_seconds"] = result.seconds if result else 0.0
        m["best_epoch"] = result.best_epoch if result else 0
        models[name] = m
    ctx.metrics["models"] = models
    ctx.timings["evaluate"] = time.perf_counter() - start


def summarize(models: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How much of the teacher-scratch accuracy gap the distilled student closed."""
    t, s, k = (models[n]["accuracy"] for n in ("teacher", "scratch", "kd"))
    gap = t - s
    return {
        "kd_minus_scratch": k - s,
        "gap_closed": (k - s) / gap if gap > 0 else None,
    }


def environment(ctx: RunContext) -> dict[str, Any]:
    return {
        "kdlens": kdlens.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "world_size": ctx.world_size,
        "platform": platform.platform(),
    }


def metrics_document(ctx: RunContext) -> dict[str, Any]:
    """The ``metrics.json`` contract: keep these keys; later stages add models and keys."""
    ds = ctx.dataset
    return {
        "kdlens_version": kdlens.__version__,
        "dataset": {
            "name": ds.name,
            "num_classes": ds.num_classes,
            "n_train": len(ctx.split.train),
            "n_val": len(ctx.split.val),
            "n_test": len(ctx.split.test),
        },
        "models": ctx.metrics["models"],
        "summary": {**summarize(ctx.metrics["models"]), **ctx.metrics.get("summary", {})},
        **{k: v for k, v in ctx.metrics.items() if k not in ("models", "summary")},
        "timings": ctx.timings,
        "environment": environment(ctx),
    }


def run(
    config: RunConfig,
    out_dir: str | Path,
    overwrite: bool = False,
    progress: bool = False,
    tensorboard: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Run the whole experiment and write the run folder; returns the metrics written.

    ``tensorboard=True`` also writes TensorBoard event files to ``<out_dir>/tb/<model>``.
    ``resume=True`` continues the run in ``out_dir`` (see :mod:`kdlens.resume`).
    Under torchrun only the main process goes on after training; the others return ``{}``.
    """
    total = time.perf_counter()
    ctx = prepare(config, out_dir, overwrite=overwrite, progress=progress, resume=resume)
    _start_folder(ctx, overwrite)
    if tensorboard:
        ctx.on_epoch = TensorBoardLogger(ctx.out_dir / "tb")
    train_teacher(ctx)
    train_students(ctx)
    # Training is the only work the processes share: the main process goes on alone, so later
    # stages that train (readable students, pruning fine-tunes) run as in a single process.
    ctx.world_size, main = distributed.world_size(), distributed.is_main()
    distributed.teardown()
    if not main:
        return {}
    evaluate_models(ctx)
    readable_stage(ctx)
    omitted_class_stage(ctx)
    deploy(ctx)
    # Later stages go here, each reading and adding to ctx (models, ctx.metrics, ctx.timings).
    report_stage(ctx)  # keep last: explains every model the stages above added
    if tensorboard:
        ctx.on_epoch.close()
    ctx.timings["total"] = time.perf_counter() - total
    metrics = metrics_document(ctx)
    write_json(ctx.out_dir / "metrics.json", metrics)
    return metrics
