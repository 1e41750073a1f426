"""One training loop for teachers and students: it sums what the Distiller returns."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from kdlens.config import TrainConfig
from kdlens.data.loader import BatchLoader
from kdlens.distill.distiller import Distiller, compute_logits
from kdlens.errors import KdlensError
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
            nesterov=cfg.momentum > 0,
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
) -> TrainResult:
    """Train ``distiller.student`` for ``cfg.epochs``; keep (and restore) the best-validation weights.

    Selection is by validation accuracy, ties broken by validation NLL.
    """
    optimizer = make_optimizer(distiller.trainable_parameters(), cfg)
    scheduler = make_scheduler(optimizer, cfg)
    result = TrainResult()
    best_key = (-math.inf, -math.inf)
    best_state = None
    start = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=desc, disable=not progress, leave=True, unit="epoch")
    for epoch in bar:
        distiller.set_progress(epoch - 1, cfg.epochs)  # warm-ups and weight schedules read it
        record = _train_epoch(distiller, train_loader, optimizer, epoch)
        record["lr"] = optimizer.param_groups[0]["lr"]
        scheduler.step()
        val_logits = compute_logits(distiller.student, val_loader)
        record["val_accuracy"] = accuracy(val_logits, val_loader.y)
        record["val_nll"] = nll(val_logits, val_loader.y)
        result.history.append(record)
        key = (record["val_accuracy"], -record["val_nll"])
        if key > best_key:
            best_key, result.best_epoch = key, epoch
            best_state = copy.deepcopy(distiller.student.state_dict())
        bar.set_postfix(
            loss=f"{record['loss']:.3f}",
            acc=f"{record['train_accuracy']:.3f}",
            val=f"{record['val_accuracy']:.3f}",
        )
        if on_epoch is not None:
            on_epoch(record)
    result.seconds = time.perf_counter() - start
    result.best_val_accuracy = best_key[0]
    if best_state is not None:
        distiller.student.load_state_dict(best_state)
    distiller.eval()
    return result


def _train_epoch(
    distiller: Distiller, loader: BatchLoader, optimizer, epoch: int
) -> dict[str, float]:
    distiller.train()
    sums: dict[str, float] = {}
    correct = seen = 0
    for step, batch in enumerate(loader, 1):
        out = distiller(batch)
        loss = out["loss"]
        if not torch.isfinite(loss):
            raise DivergenceError(f"loss became {float(loss)} at epoch {epoch}, step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n = len(batch.y)
        for key, value in out.items():
            if key != "logits":
                sums[key] = sums.get(key, 0.0) + float(value.detach()) * n
        correct += int((out["logits"].argmax(-1) == batch.y).sum())
        seen += n
    record = {"epoch": epoch, **{k: v / seen for k, v in sums.items()}}
    record["train_accuracy"] = correct / seen
    return record
