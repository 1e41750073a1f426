"""Reopen a finished run folder: its config, data split, normalisation and trained models.

Everything needed to rebuild a model is in the folder (``config.yaml``, ``split.json``,
``normalization.json``, ``checkpoints/``); the data comes back from the dataset registry.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdlens.checkpoints import load_weights
from kdlens.config import ModelSpec, RunConfig, load_config
from kdlens.data import (
    BatchLoader,
    Dataset,
    Normalizer,
    Split,
    dataset_from_config,
    restore_dataset,
)
from kdlens.errors import CheckpointError, KdlensError
from kdlens.models import create_model
from kdlens.utils import read_json

FLOAT_SUFFIX = ".safetensors"
INT8_SUFFIX = ".pt"  # a student after PyTorch dynamic int8 quantization (torch.save state dict)


@dataclass
class Run:
    """A run folder, reopened. Models are rebuilt on the CPU, in eval mode."""

    path: Path
    config: RunConfig
    dataset: Dataset
    split: Split
    normalizer: Normalizer
    metrics: dict[str, Any] | None

    def model_names(self) -> list[str]:
        """Models with a PyTorch checkpoint in this run, in the order the run wrote them."""
        names = [_stem(p) for p in self._checkpoints()]
        order = list((self.metrics or {}).get("models", {}))
        return sorted(names, key=lambda n: (order.index(n) if n in order else len(order), n))

    def _checkpoints(self) -> list[Path]:
        folder = self.path / "checkpoints"
        return sorted(folder.glob(f"*{FLOAT_SUFFIX}")) + sorted(folder.glob(f"*{INT8_SUFFIX}"))

    def build(self, name: str) -> nn.Module:
        """A fresh (untrained) model of ``name``'s architecture: the teacher's or the student's."""
        spec = model_spec(self.config, name)
        ds = self.dataset
        return create_model(spec.model, ds.input_shape, ds.num_classes, **spec.model_args)

    def load_model(self, name: str) -> nn.Module:
        """The trained model ``name`` (e.g. ``teacher``, ``kd``, ``kd_pruned50``, ``kd_int8``)."""
        folder = self.path / "checkpoints"
        if name not in self.model_names():  # also refuses names that are paths
            have = ", ".join(self.model_names()) or "none"
            raise KdlensError(f"run {self.path} has no model {name!r} (it has: {have})")
        if (folder / f"{name}{FLOAT_SUFFIX}").is_file():
            model = self.build(name)
            load_weights(model, folder / f"{name}{FLOAT_SUFFIX}", self.dataset.num_classes)
            return model.eval()
        from kdlens.deploy.quantize import load_dynamic_int8

        return load_dynamic_int8(self.build(name), folder / f"{name}{INT8_SUFFIX}")

    def tensors(self, part: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw (un-normalised) inputs and labels of the ``train``, ``val`` or ``test`` split."""
        idx = torch.as_tensor(getattr(self.split, part))
        return self.dataset.x[idx], self.dataset.y[idx]

    def loader(self, part: str, batch_size: int = 512) -> BatchLoader:
        x, y = self.tensors(part)
        return BatchLoader(x, y, self.normalizer, batch_size)


def model_spec(config: RunConfig, name: str) -> ModelSpec:
    """The architecture behind a model name of a run: teacher, readable soft tree, or student
    (scratch, kd and everything derived from kd: pruned, int8)."""
    if name == "teacher":
        return config.teacher
    if name.startswith("soft_tree"):
        return config.readable.soft_tree
    return config.student


def _stem(path: Path) -> str:
    return path.name.removesuffix(INT8_SUFFIX).removesuffix(FLOAT_SUFFIX)


def normalizer_from_dict(data: dict[str, list[float]], example: torch.Tensor) -> Normalizer:
    """Inverse of ``Normalizer.to_dict``: per-channel (C, 1, 1) for images, per-feature otherwise."""
    mean, std = torch.tensor(data["mean"]), torch.tensor(data["std"])
    if example.ndim == 3:  # one image (C, H, W)
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return Normalizer(mean.to(example.dtype), std.to(example.dtype))


def load_run(run_dir: str | Path) -> Run:
    """Reopen ``run_dir``; a missing or incomplete folder is a one-line :class:`KdlensError`."""
    path = Path(run_dir)
    if not path.is_dir():
        raise KdlensError(f"run folder not found: {path}")
    for needed in ("config.yaml", "split.json", "normalization.json"):
        if not (path / needed).is_file():
            raise KdlensError(f"{path} is not a kdlens run folder (no {needed})")
    config = load_config(path / "config.yaml")
    data = config.data
    dataset = dataset_from_config(data, download=False)
    split = Split.load(path / "split.json")
    if max(max(split.train), max(split.val), max(split.test)) >= len(dataset.y):
        raise CheckpointError(f"{path}/split.json does not fit dataset {data.name!r}")
    dataset = restore_dataset(dataset, split.train, path)
    normalizer = normalizer_from_dict(read_json(path / "normalization.json"), dataset.x[0])
    metrics_path = path / "metrics.json"
    metrics = read_json(metrics_path) if metrics_path.is_file() else None
    return Run(path, config, dataset, split, normalizer, metrics)
