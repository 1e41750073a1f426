"""What every stage of a run reads and adds to: config, data, models, their records and results."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import kdlens
from kdlens import distributed
from kdlens.config import ModelSpec, RunConfig, TrainConfig
from kdlens.data import BatchLoader, Dataset, Normalizer, Split
from kdlens.models import create_model
from kdlens.run.folder import RunFolder
from kdlens.run.records import ModelRecord
from kdlens.run.state import TrainResult

EVAL_BATCH = 512

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass
class RunContext:
    """The state of one run as its stages build it up.

    ``models`` holds the torch models by name; ``records`` says what each model is (role, family,
    twin...); ``metrics`` becomes metrics.json; ``folder`` owns every file.
    """

    config: RunConfig
    dataset: Dataset
    split: Split
    normalizer: Normalizer
    device: torch.device
    folder: RunFolder
    progress: bool = False
    models: dict[str, nn.Module] = field(default_factory=dict)
    records: dict[str, ModelRecord] = field(default_factory=dict)
    test_logits: dict[str, torch.Tensor] = field(default_factory=dict)
    train_results: dict[str, TrainResult] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the run could not do as configured
    # Called as on_epoch(model_name, epoch_record) after every training epoch (e.g. TensorBoard).
    on_epoch: Callable[[str, dict[str, float]], Any] | None = None
    resume: bool = False  # continue the run in the folder: skip finished stages
    world_size: int = 1  # processes that train together (torchrun)
    # Train each distilled student's hard-label twin (scratch); a search's trials need only kd.
    twins: bool = True
    # Data the students learn on (the transfer set), set by the teacher stage: (x, y) raw.
    student_data: Tensors | None = None
    teacher_data: Tensors | None = None

    @property
    def out_dir(self):
        return self.folder.path

    def tensors(self, part: str) -> Tensors:
        """Raw (un-normalised) inputs and labels of the ``train``, ``val`` or ``test`` split."""
        idx = torch.as_tensor(getattr(self.split, part))
        return self.dataset.x[idx], self.dataset.y[idx]

    def eval_loader(self, part: str) -> BatchLoader:
        x, y = self.tensors(part)
        return BatchLoader(x, y, self.normalizer, EVAL_BATCH, device=self.device)

    def train_loader(self, cfg: TrainConfig, seed: int, data: Tensors | None = None) -> BatchLoader:
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
        """A fresh model of ``spec``'s architecture for this data, on the run's device."""
        model = create_model(
            spec.model, self.dataset.input_shape, self.dataset.num_classes, **spec.model_args
        )
        return model.to(self.device)

    def add_model(self, record: ModelRecord, model: nn.Module | None = None) -> None:
        """Register a model of the run; the records file is rewritten so a folder killed later
        still says what every saved model is."""
        self.records[record.name] = record
        if model is not None:
            self.models[record.name] = model
        self.folder.write_json(
            self.folder.models, {n: r.to_dict() for n, r in self.records.items()}
        )

    def note(self, text: str) -> None:
        """Something the run did differently from its config (printed and kept in metrics)."""
        if text not in self.notes:
            self.notes.append(text)

    def environment(self) -> dict[str, Any]:
        return {
            "kdlens": kdlens.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "world_size": self.world_size,
            "platform": platform.platform(),
        }

    def metrics_document(self) -> dict[str, Any]:
        """The ``metrics.json`` contract: keep these keys; stages add models and keys."""
        ds = self.dataset
        models = self.metrics.get("models", {})
        for name, m in models.items():
            if name in self.records:
                m.update(self.records[name].summary())
        return {
            "kdlens_version": kdlens.__version__,
            "dataset": {
                "name": ds.name,
                "num_classes": ds.num_classes,
                "class_names": list(ds.class_names),
                "n_train": len(self.split.train),
                "n_val": len(self.split.val),
                "n_test": len(self.split.test),
            },
            "models": models,
            "summary": self.metrics.get("summary", {}),
            **{k: v for k, v in self.metrics.items() if k not in ("models", "summary")},
            "notes": list(self.notes),
            "timings": self.timings,
            "environment": self.environment(),
        }
