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
from kdlens.data import BatchLoader, Dataset, LazyRows, Normalizer, Split
from kdlens.run.build import create_bare, with_preprocess
from kdlens.run.folder import RunFolder
from kdlens.run.records import ModelRecord
from kdlens.run.state import TrainResult

EVAL_BATCH = 512

Tensors = tuple[torch.Tensor | LazyRows, torch.Tensor]


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
    # (N,) dataset index of each row of student_data / teacher_data; None for another dataset's.
    student_index: torch.Tensor | None = None
    teacher_index: torch.Tensor | None = None
    # A teacher loaded rather than trained: its validation accuracy and preprocessing.
    loaded_teacher: dict[str, Any] | None = None

    @property
    def out_dir(self):
        return self.folder.path

    def tensors(self, part: str) -> Tensors:
        """Raw (un-normalised) inputs and labels of the ``train``, ``val`` or ``test`` split.

        Streaming data (``dataset.streaming``): the training split's inputs stay unread
        :class:`LazyRows` (the loaders stream them; index them to read rows); val and test are
        read, as they are small.
        """
        idx = self.indices(part)
        x = self.dataset.x
        if isinstance(x, LazyRows) and part == "train":
            return x.select(idx), self.dataset.y[idx]
        return x[idx], self.dataset.y[idx]

    def indices(self, part: str) -> torch.Tensor:
        """(N,) dataset indices of the ``train``, ``val`` or ``test`` split."""
        return torch.as_tensor(getattr(self.split, part))

    def eval_loader(self, part: str) -> BatchLoader:
        x, y = self.dataset.x, self.dataset.y[self.indices(part)]
        x = x.select(self.indices(part)) if isinstance(x, LazyRows) else x[self.indices(part)]
        return BatchLoader(
            x, y, self.normalizer, EVAL_BATCH, device=self.device, source_index=self.indices(part)
        )

    def train_loader(
        self,
        cfg: TrainConfig,
        seed: int,
        data: Tensors | None = None,
        source_index: torch.Tensor | None = None,
    ) -> BatchLoader:
        """Batches of ``data`` (default: the training split, whose dataset indices it knows);
        ``source_index`` gives the dataset index of each row of ``data``."""
        if data is None:
            data, source_index = self.tensors("train"), self.indices("train")
        x, y = data
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
            source_index=source_index,
        )

    def train_sample(self, max_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw inputs, labels and dataset indices of the training split, read into memory: all
        of it, or for streaming data a random sample of at most ``max_rows`` rows (drawn from
        the run's seed, kept in the split's order)."""
        idx = self.indices("train")
        if self.dataset.streaming and len(idx) > max_rows:
            g = torch.Generator().manual_seed(self.config.seed)
            idx = idx[torch.randperm(len(idx), generator=g)[:max_rows].sort().values]
        return self.dataset.x[idx], self.dataset.y[idx], idx

    def build(
        self, spec: ModelSpec, role: str = "model", bare: nn.Module | None = None
    ) -> nn.Module:
        """A fresh model of ``spec``'s architecture for this data, fed what it expects
        (``spec.preprocess``), on the run's device. ``bare``: an already built (e.g. loaded)
        model of ``spec`` to wrap instead."""
        ds, norm = self.dataset, self.normalizer
        if bare is None:
            bare = create_bare(spec.model, spec.model_args, ds, norm, spec.preprocess.resize)
        return with_preprocess(bare, spec, role, ds, norm).to(self.device)

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
