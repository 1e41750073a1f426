"""Reopen a run folder: its config, data split, normalisation, model records and trained models.

Everything needed to rebuild a model is in the folder (``config.yaml``, ``split.json``,
``normalization.json``, ``models.json``, ``checkpoints/``); the data comes back from the dataset
registry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlens.config import RunConfig, apply_overrides, config_from_dict, load_config
from kdlens.data import (
    BatchLoader,
    Dataset,
    Normalizer,
    Split,
    dataset_from_config,
    restore_dataset,
)
from kdlens.errors import CheckpointError, KdlensError
from kdlens.run.build import build_from_spec
from kdlens.run.folder import RunFolder
from kdlens.run.inputs import model_inputs
from kdlens.run.records import ModelRecord
from kdlens.weights import load_dynamic_int8, load_weights


@dataclass
class Run:
    """A run folder, reopened. Models are rebuilt on the CPU, in eval mode."""

    folder: RunFolder
    config: RunConfig
    dataset: Dataset
    split: Split
    normalizer: Normalizer
    metrics: dict[str, Any] | None
    records: dict[str, ModelRecord] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder.path

    def model_names(self, **wanted: Any) -> list[str]:
        """Models with weights in this run (optionally only those whose record fields equal
        ``wanted``, e.g. ``role="deployed"``), in the order the run made them."""
        return [
            n
            for n, r in self.records.items()
            if r.weights is not None
            and r.format in ("safetensors", "torch_int8")
            and all(getattr(r, k) == v for k, v in wanted.items())
        ]

    def build(self, name: str) -> nn.Module:
        """A fresh (untrained) model of ``name``'s architecture, with its preprocessing."""
        record = self._record(name)
        if not record.spec:
            raise KdlensError(f"model {name!r} of run {self.path} is not a torch model")
        return build_from_spec(record.spec, self.dataset, self.normalizer)

    def load_model(self, name: str) -> nn.Module:
        """The trained model ``name`` (e.g. ``teacher``, ``kd``, ``kd_pruned50``, ``kd_int8``)."""
        if name not in self.model_names():  # also refuses names that are paths
            have = ", ".join(self.model_names()) or "none"
            raise KdlensError(f"run {self.path} has no model {name!r} (it has: {have})")
        record = self.records[name]
        path = self.path / record.weights
        if record.format == "safetensors":
            model = self.build(name)
            load_weights(model, path, self.dataset.num_classes)
            return model.eval()
        return load_dynamic_int8(self.build(name), path)

    def _record(self, name: str) -> ModelRecord:
        if name not in self.records:
            have = ", ".join(self.records) or "none"
            raise KdlensError(f"run {self.path} has no model {name!r} (it has: {have})")
        return self.records[name]

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (un-normalised) inputs and labels of the ``train``, ``val`` or ``test`` split."""
        idx = torch.as_tensor(getattr(self.split, part))
        return self.dataset.x[idx], self.dataset.y[idx]

    def loader(self, part: str, batch_size: int = 512, device="cpu") -> BatchLoader:
        x, y = self.tensors(part)
        index = torch.as_tensor(getattr(self.split, part))
        return BatchLoader(x, y, self.normalizer, batch_size, device=device, source_index=index)


def normalizer_from_dict(data: dict[str, list[float]], example: torch.Tensor) -> Normalizer:
    """Inverse of ``Normalizer.to_dict``: per-channel (C, 1, 1) for images, per-feature otherwise."""
    mean, std = torch.tensor(data["mean"]), torch.tensor(data["std"])
    if example.ndim == 3:  # one image (C, H, W)
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return Normalizer(mean.to(example.dtype), std.to(example.dtype))


def read_config(folder: RunFolder, overrides: list[str] | None = None) -> RunConfig:
    """The run's resolved config (``config.yaml``, or the marker's copy when the run was killed
    before writing it), with ``overrides`` applied."""
    if folder.config.is_file():
        return load_config(folder.config, overrides)
    saved = folder.read_marker().get("config") if folder.marker.is_file() else None
    if not isinstance(saved, dict):
        raise KdlensError(f"{folder.path} is not a kdlens run folder (no {folder.config.name})")
    return config_from_dict(apply_overrides(saved, overrides))


def load_run(run_dir: str | Path, need_metrics: bool = False) -> Run:
    """Reopen ``run_dir``; a missing, incomplete or corrupt folder is a one-line error."""
    folder = RunFolder(run_dir, write=False)
    path = folder.path
    if not path.is_dir():
        raise KdlensError(f"run folder not found: {path}")
    if not folder.is_run():
        raise KdlensError(f"{path} is not a kdlens run folder")
    if folder.is_seeds():
        raise KdlensError(
            f"{path} holds several seeds, each a run folder: give one of them, e.g. "
            f"{folder.seed_folder(0).path}"
        )
    for needed in (folder.config, folder.split, folder.normalization):
        if not needed.is_file():
            raise KdlensError(
                f"run {path} stopped before it wrote {needed.name}; continue it with "
                f"`kdlens run --resume {path}`"
            )
    if need_metrics and not folder.metrics.is_file():
        raise KdlensError(
            f"run {path} stopped before its models were evaluated (no {folder.metrics.name}); "
            f"continue it with `kdlens run --resume {path}`"
        )
    config = load_config(folder.config)
    data = config.data
    dataset = dataset_from_config(data, download=False)
    split = Split.load(folder.split)
    if max(max(split.train), max(split.val), max(split.test)) >= len(dataset.y):
        raise CheckpointError(f"{folder.split} does not fit dataset {data.name!r}")
    dataset = restore_dataset(dataset, split.train, folder.dataset_record)
    dataset = model_inputs(dataset, config.teacher.model)  # text: the teacher's token ids
    normalizer = normalizer_from_dict(folder.read_json(folder.normalization), dataset.x[0])
    metrics = folder.read_json(folder.metrics) if folder.metrics.is_file() else None
    records: dict[str, ModelRecord] = {}
    if folder.models.is_file():
        raw = folder.read_json(folder.models)
        records = {n: ModelRecord.from_dict(r) for n, r in raw.items()}
    return Run(folder, config, dataset, split, normalizer, metrics, records)
