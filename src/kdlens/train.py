"""One training loop for teachers and students: it sums what the Distiller returns."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from kdlens import distributed
from kdlens.checkpointing import StageCheckpoint, TrainProgress
from kdlens.config import TrainConfig
from kdlens.data.loader import BatchLoader
from kdlens.distill.distiller import Distiller, compute_logits
from kdlens.errors import ConfigError, KdlensError
from kdlens.evaluate.metrics import accuracy, nll


class DivergenceError(KdlensError):
    """The loss became NaN or infinite."""


@dataclass
class TrainResult:
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0


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
