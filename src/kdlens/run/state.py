"""Resumable training state: one file per stage, replaced atomically at the end of an epoch.

The state file is ``torch.save`` of a dict of tensors and plain Python values only (no classes),
so it loads with ``torch.load(weights_only=True)`` and can never run code. It holds what the next
epoch needs to continue exactly as if nothing had happened: trainable weights, optimizer and
scheduler state, the loop's bookkeeping (history, best epoch and its weights) and every random
generator the loop draws from (torch, numpy, python, CUDA, and the batch loader's own).
A stage that finished writes ``<name>.done.json`` (after its weights) and drops its state file.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdlens.errors import CheckpointError
from kdlens.run.folder import RunFolder
from kdlens.utils import atomic_writer
from kdlens.weights import torch_load_safely

FORMAT = 1


@dataclass
class TrainProgress:
    """What the training loop carries from one epoch to the next, besides weights and optimizer."""

    epoch: int = 0  # last finished epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_key: tuple[float, float] = (-math.inf, -math.inf)  # (val accuracy, -val NLL)
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None  # the student's weights at best_epoch
    seconds: float = 0.0  # training time of the epochs done so far, across restarts


def capture_rng() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The distiller's weights without its frozen teacher (the teacher has its own checkpoint)."""
    return {
        k: v.detach().cpu().clone()
        for k, v in module.state_dict().items()
        if not k.startswith("teacher.")
    }


@dataclass
class TrainResult:
    """What a finished training stage reports (saved in its done record)."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = float("nan")
    seconds: float = 0.0


@dataclass
class StageCheckpoint:
    """Where one training stage keeps its state in a run folder (``folder.write`` is false on all
    but the main process, which then writes nothing)."""

    folder: RunFolder
    name: str
    every: int = 1
    resume: bool = False

    @property
    def write(self) -> bool:
        return self.folder.write

    @property
    def state_path(self) -> Path:
        return self.folder.state(self.name)

    @property
    def done_path(self) -> Path:
        return self.folder.done(self.name)

    def due(self, epoch: int, last_epoch: int) -> bool:
        """Save after every ``every``-th epoch; the last epoch needs none (the stage finishes)."""
        return self.write and self.every > 0 and epoch % self.every == 0 and epoch < last_epoch

    def save(
        self,
        distiller: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        loader_state: torch.Tensor,
        progress: TrainProgress,
    ) -> None:
        state = {
            "format": FORMAT,
            "stage": self.name,
            "progress": {**vars(progress), "best_key": list(progress.best_key)},
            "model": trainable_state(distiller),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "loader": loader_state,
            "rng": capture_rng(),
        }
        if progress.best_epoch == progress.epoch:  # the best weights are the current ones
            state["progress"]["best_state"] = None
            state["best_is_current"] = True
        with atomic_writer(self.state_path) as f:
            torch.save(state, f)

    def restore(
        self, distiller: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, loader
    ) -> TrainProgress | None:
        """Load the saved state into the given objects; None when there is nothing to resume."""
        if not self.resume or not self.state_path.is_file():
            return None
        state = torch_load_safely(self.state_path)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise CheckpointError(f"{self.state_path} is not a kdlens training state")
        try:
            missing, unexpected = distiller.load_state_dict(state["model"], strict=False)
            if unexpected or any(not k.startswith("teacher.") for k in missing):
                raise CheckpointError(
                    f"{self.state_path} holds another model's weights; start a new run"
                )
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            loader.set_state(state["loader"])
            restore_rng(state["rng"])
            p = state["progress"]
            if state.get("best_is_current"):
                p["best_state"] = copy.deepcopy(distiller.student.state_dict())
            return TrainProgress(**{**p, "best_key": tuple(p["best_key"])})
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{self.state_path} is damaged ({first})") from None

    def finished(self) -> TrainResult | None:
        """The saved result of a stage that already finished, when resuming."""
        if not self.resume or not self.done_path.is_file():
            return None
        record = self.folder.read_json(self.done_path)
        try:
            return TrainResult(**record.get("result", record))  # kdlens 0.1 saved the result alone
        except (AttributeError, TypeError):
            raise CheckpointError(f"{self.done_path} is not a kdlens stage record") from None

    def mark_finished(self, result: TrainResult, inputs: dict[str, Any]) -> None:
        """Record the stage as finished, with the config values it was trained with (``inputs``:
        dotted config path -> value), so a resume that would change them is refused."""
        self.folder.write_json(self.done_path, {"result": asdict(result), "inputs": inputs})
        if self.write:
            self.state_path.unlink(missing_ok=True)
