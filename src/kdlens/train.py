"""One training loop for every model (it sums what the Distiller returns), and the one training
stage every stage of a run uses: resumable, under torchrun, with the teacher-logit cache."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from tqdm.auto import tqdm

from kdlens import distributed
from kdlens.config import RunConfig, TrainConfig
from kdlens.data.loader import BatchLoader, is_augmenting
from kdlens.distill.distiller import Distiller, TeacherDistiller, compute_logits
from kdlens.errors import ConfigError, KdlensError
from kdlens.evaluate.metrics import accuracy, nll
from kdlens.models.logits_teacher import LogitsTeacher
from kdlens.run.context import EVAL_BATCH, RunContext, Tensors
from kdlens.run.records import ModelRecord
from kdlens.run.state import StageCheckpoint, TrainProgress, TrainResult
from kdlens.utils import write_bytes_atomic
from kdlens.weights import load_weights, save_weights

log = logging.getLogger("kdlens")


class DivergenceError(KdlensError):
    """The loss became NaN or infinite."""


def make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params,
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
            nesterov=cfg.nesterov and cfg.momentum > 0,
        )
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """Stepped once per epoch."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=cfg.milestones, gamma=cfg.gamma
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)


def fit(
    distiller: Distiller,
    train_loader: BatchLoader,
    val_loader: BatchLoader,
    cfg: TrainConfig,
    desc: str = "train",
    progress: bool = False,
    on_epoch: Callable[[dict[str, float]], Any] | None = None,
    checkpoint: StageCheckpoint | None = None,
) -> TrainResult:
    """Train ``distiller.student`` for ``cfg.epochs``; keep (and restore) the best-validation weights.

    Selection is by validation accuracy, ties broken by validation NLL. With ``checkpoint`` the
    loop continues from a saved state and saves its own after every ``checkpoint.every`` epochs.
    """
    optimizer = make_optimizer(distiller.trainable_parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    state = TrainProgress()
    if checkpoint is not None:
        state = checkpoint.restore(distiller, optimizer, scheduler, train_loader) or state
    saved_epoch = state.epoch  # the epoch the state file on disk holds (0: none)
    model = distributed.wrap(distiller)
    start = time.perf_counter()
    bar = tqdm(
        range(state.epoch + 1, cfg.epochs + 1),
        desc=desc,
        disable=not progress or not distributed.is_main(),
        leave=True,
        unit="epoch",
    )
    for epoch in bar:
        distiller.set_progress(epoch - 1, cfg.epochs)  # warm-ups and weight schedules read it
        try:
            record = _train_epoch(model, distiller, train_loader, optimizer, epoch, cfg)
        except DivergenceError as e:
            kept = (
                f"; epoch {saved_epoch} is kept in {checkpoint.state_path}"
                if checkpoint is not None and saved_epoch > 0
                else ""
            )
            raise DivergenceError(
                f"{desc}: {e}{kept}; lower train.lr or set train.grad_clip"
            ) from None
        record["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step()
        distributed.sync_buffers(distiller)
        val_logits = compute_logits(distiller.student, val_loader)
        record["val_accuracy"] = accuracy(val_logits, val_loader.y)
        record["val_nll"] = nll(val_logits, val_loader.y)
        state.history.append(record)
        key = (record["val_accuracy"], -record["val_nll"])
        if key > state.best_key:
            state.best_key, state.best_epoch = key, epoch
            state.best_state = copy.deepcopy(distiller.student.state_dict())
        state.epoch = epoch
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            acc=f"{record['train_accuracy']:.3f}",
            val=f"{record['val_accuracy']:.3f}",
        )
        if checkpoint is not None and checkpoint.due(epoch, cfg.epochs):
            elapsed = state.seconds + time.perf_counter() - start
            snapshot = TrainProgress(**{**vars(state), "seconds": elapsed})
            checkpoint.save(distiller, optimizer, scheduler, train_loader.get_state(), snapshot)
            saved_epoch = epoch
        if on_epoch is not None:
            on_epoch(record)
    result = TrainResult(
        history=state.history,
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_key[0],
        seconds=state.seconds + time.perf_counter() - start,
    )
    if state.best_state is not None:
        distiller.student.load_state_dict(state.best_state)
    distiller.eval()
    return result


def autocast(precision: str, device: torch.device):
    """bf16 autocast for ``precision == "bf16"``; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse bf16 where autocast cannot run it, before anything trains."""
    if precision != "bf16":
        return
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"train.precision: bf16 is not supported by this GPU ({device})")
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ConfigError(f"train.precision: bf16 autocast is not available on {device.type}")


def _train_epoch(
    model: torch.nn.Module,
    distiller: Distiller,
    loader: BatchLoader,
    optimizer,
    epoch: int,
    cfg: TrainConfig,
) -> dict[str, float]:
    """One pass over ``loader``; ``model`` is ``distiller`` or its DDP wrapper."""
    model.train()
    sums: dict[str, float] = {}
    correct = seen = 0
    params = distiller.trainable_parameters() if cfg.grad_clip else []
    for step, batch in enumerate(loader, 1):
        with autocast(cfg.precision, batch.x.device):
            out = model(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise DivergenceError(
                f"loss became {float(loss.detach())} at epoch {epoch}, step {step}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        n = len(batch.y)
        for key, value in out.items():
            if key != "logits":
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        correct += int((out["logits"].argmax(-1) == batch.y).sum())
        seen += n
    # Several processes: each saw its share; the epoch's record is over all of them.
    keys = sorted(sums)
    totals = distributed.sum_across([sums[k] for k in keys] + [correct, seen], loader.device)
    seen = totals[-1]
    record = {"epoch": epoch, **{k: v / seen for k, v in zip(keys, totals[:-2], strict=True)}}
    record["train_accuracy"] = totals[-2] / seen
    return record


def config_values(config: RunConfig, prefixes: tuple[str, ...]) -> dict[str, Any]:
    """The config's leaf values under ``prefixes`` (dotted paths), as a finished stage records
    them: a resume that would change one of them is refused."""
    flat: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif any(path == p or path.startswith(p + ".") for p in prefixes):
            # How often state is saved, and how many processes read the data, change nothing.
            if not path.endswith(".checkpoint_every") and path != "data.workers":
                flat[path] = node

    walk(config.model_dump(mode="json"), "")
    return flat


def train_stage(
    ctx: RunContext,
    record: ModelRecord,
    distiller: Distiller,
    cfg: TrainConfig,
    seed: int,
    data: Tensors | None = None,
    depends_on: tuple[str, ...] = (),
    keep: bool = True,
    source_index: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``distiller.student`` as the model ``record.name`` of the run, or reload it when a
    resumed run finished it before; every epoch's state is saved, so a kill loses at most one.

    ``data`` (default: the training split) with ``source_index``, the dataset index of each of
    its rows (None for another dataset's rows: a teacher known by its saved outputs cannot teach
    them). ``depends_on``: config prefixes the result depends on, recorded when the stage
    finishes. ``keep=False`` trains without adding the model to the run (complexity sweeps).
    """
    start = time.perf_counter()
    name, folder = record.name, ctx.folder
    ckpt = StageCheckpoint(folder, name, cfg.checkpoint_every, ctx.resume)
    done = ckpt.finished()
    distributed.agree(
        (done is not None, ctx.resume and ckpt.state_path.is_file()),
        f"{name}: the processes see different files in {folder.path}; "
        "resuming under torchrun needs the run folder on a file system all machines share",
    )
    if done is not None:  # resuming: this stage finished before the run stopped
        load_weights(distiller.student, folder.weights(name))
        result = done
    else:
        if data is None:
            data, source_index = ctx.tensors("train"), ctx.indices("train")
        use_teacher_cache(ctx, distiller, cfg, data, source_index)
        result = fit(
            distiller,
            ctx.train_loader(cfg, seed, data, source_index),
            ctx.eval_loader("val"),
            cfg,
            desc=name,
            progress=ctx.progress,
            on_epoch=partial(ctx.on_epoch, name) if ctx.on_epoch else None,
            checkpoint=ckpt,
        )
    model = distiller.student.eval()
    if done is None:
        if folder.write:
            save_weights(model, folder.weights(name))
        folder.write_json(folder.history(name), result.history)
        ckpt.mark_finished(result, config_values(ctx.config, depends_on))
    if keep:
        record.weights = folder.relative(folder.weights(name))
        record.format = "safetensors"
        ctx.train_results[name] = result
        ctx.add_model(record, model)
        ctx.timings[name] = time.perf_counter() - start
    log.info(
        "%s: %s in %.1fs (best epoch %d, val accuracy %.4f)",
        name,
        "reloaded" if done is not None else "trained",
        time.perf_counter() - start,
        result.best_epoch,
        result.best_val_accuracy,
    )
    return result


def use_teacher_cache(
    ctx: RunContext,
    distiller: Distiller,
    cfg: TrainConfig,
    data: Tensors,
    source_index: torch.Tensor | None = None,
):
    """Give ``distiller`` the teacher's logits over ``data`` when they cannot change (the input
    is not augmented), computed once per run and kept in the run folder."""
    if not isinstance(distiller, TeacherDistiller) or not distiller.accepts_cache:
        return
    if not ctx.config.distill.cache_teacher_logits or is_augmenting(cfg.augment):
        return
    distiller.set_teacher_cache(teacher_logits(ctx, distiller.teacher, data, source_index))


def teacher_logits(
    ctx: RunContext,
    teacher: torch.nn.Module,
    data: Tensors,
    source_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The teacher's logits over un-augmented ``data``, from the run folder's cache when it holds
    them for the same examples (resuming or re-reporting never recomputes them)."""
    import hashlib

    from safetensors.torch import load, save

    x, y = data
    if isinstance(teacher, LogitsTeacher):  # its saved rows: nothing to compute or cache
        loader = BatchLoader(x, y, ctx.normalizer, EVAL_BATCH, source_index=source_index)
        return compute_logits(teacher, loader)
    key = hashlib.sha1(y.numpy().tobytes() + str(tuple(x.shape)).encode()).hexdigest()[:12]
    path = ctx.folder.teacher_logits_cache(key)
    if path.is_file():
        try:
            cached = load(path.read_bytes())["logits"]
            if cached.shape == (len(y), ctx.dataset.num_classes):
                return cached
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
            log.warning("cache %s is unreadable; recomputing it", path)
    loader = BatchLoader(
        x, y, ctx.normalizer, EVAL_BATCH, device=ctx.device, source_index=source_index
    )
    logits = compute_logits(teacher, loader)
    if ctx.folder.write:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, save({"logits": logits.contiguous()}))
    return logits
