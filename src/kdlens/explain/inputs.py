"""What the explanations need, gathered from a live run or from a run folder on disk."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdlens.config import ExplainConfig, ModelSpec, RunConfig, load_config
from kdlens.data import BatchLoader, Normalizer, Split, dataset_from_config, restore_dataset
from kdlens.distill import compute_logits
from kdlens.errors import CheckpointError, ConfigError, KdlensError
from kdlens.utils import read_json, resolve_device

log = logging.getLogger("kdlens")

LOGITS_FILE = "test_logits.safetensors"


@dataclass
class ExplainInputs:
    """Test data (raw and normalised), every model's test logits, and the torch models."""

    x: torch.Tensor  # (N, ...) raw test inputs: images in [0, 1], tabular in data units
    y: torch.Tensor  # (N,)
    normalizer: Normalizer
    kind: str
    class_names: list[str]
    temperature: float
    config: ExplainConfig
    test_logits: dict[str, torch.Tensor]  # every model with predictions, including non-torch
    models: dict[str, nn.Module] = field(default_factory=dict)  # models Captum can explain
    feature_names: list[str] = field(default_factory=list)
    seed: int = 0

    def baseline(self) -> torch.Tensor:
        """The "absent" input for IG and deletion: a black image, or the mean of each feature."""
        zero = torch.zeros(1, *self.x.shape[1:])
        return self.normalizer(zero) if self.kind == "image" else zero


def from_context(ctx) -> ExplainInputs:
    """Inputs from a :class:`kdlens.pipeline.RunContext` that has been evaluated."""
    x, y = ctx.tensors("test")
    cfg: RunConfig = ctx.config
    return ExplainInputs(
        x=x,
        y=y,
        normalizer=ctx.normalizer,
        kind=ctx.dataset.kind,
        class_names=list(ctx.dataset.class_names),
        feature_names=list(ctx.dataset.feature_names),
        temperature=cfg.distill.temperature,
        config=cfg.explain,
        test_logits=dict(ctx.test_logits),
        models={n: m.eval() for n, m in ctx.models.items() if isinstance(m, nn.Module)},
        seed=cfg.seed,
    )


def from_run_dir(run_dir: str | Path, overrides: list[str] | None = None) -> ExplainInputs:
    """Inputs rebuilt from a run folder: config, split, normalisation, checkpoints, metrics.

    Models whose checkpoint fits the teacher's or the student's architecture are explained with
    Captum; other models listed in metrics.json take their logits from ``test_logits.safetensors``.
    """
    run = Path(run_dir)
    for text in overrides or []:
        if not text.strip().startswith("explain."):
            # The run's data, split and models are fixed; only what is explained can change.
            raise ConfigError(f"--set {text!r}: a report can only change explain.* settings")
    if not (run / "metrics.json").is_file() or not (run / "config.yaml").is_file():
        raise KdlensError(f"{run} is not a kdlens run folder (no metrics.json / config.yaml)")
    cfg = load_config(run / "config.yaml", overrides)
    dataset = dataset_from_config(cfg.data, download=False)
    split = Split.load(run / "split.json")
    dataset = restore_dataset(dataset, split.train, run)
    normalizer = _load_normalizer(run / "normalization.json", dataset.x.ndim, dataset.x.shape[1])
    idx = torch.as_tensor(split.test)
    x, y = dataset.x[idx], dataset.y[idx]
    device = resolve_device(cfg.device)
    names = list(read_json(run / "metrics.json")["models"])
    saved = _saved_logits(run / LOGITS_FILE)
    models, logits = {}, {}
    for name in names:
        model = _load_model(run, name, cfg, dataset.input_shape, dataset.num_classes, device)
        if model is not None:
            models[name] = model
            loader = BatchLoader(x, y, normalizer, 512, device=device)
            logits[name] = compute_logits(model, loader)
        elif name in saved:
            logits[name] = saved[name]
        else:
            log.warning("report: no predictions for model %r; it appears in the table only", name)
    return ExplainInputs(
        x=x,
        y=y,
        normalizer=normalizer,
        kind=dataset.kind,
        class_names=list(dataset.class_names),
        feature_names=list(dataset.feature_names),
        temperature=cfg.distill.temperature,
        config=cfg.explain,
        test_logits=logits,
        models=models,
        seed=cfg.seed,
    )


def _load_normalizer(path: Path, ndim: int, channels: int) -> Normalizer:
    raw = read_json(path)
    mean, std = torch.tensor(raw["mean"]), torch.tensor(raw["std"])
    if ndim == 4:  # per channel, broadcast over (H, W)
        mean, std = mean.reshape(channels, 1, 1), std.reshape(channels, 1, 1)
    return Normalizer(mean, std)


def _saved_logits(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        return {}
    from safetensors.torch import load_file

    return load_file(str(path))


def _load_model(run: Path, name: str, cfg: RunConfig, shape, num_classes: int, device):
    """The model saved as checkpoints/<name>.safetensors, if it fits a known architecture."""
    from kdlens.checkpoints import load_weights
    from kdlens.models import create_model

    path = run / "checkpoints" / f"{name}.safetensors"
    if not path.is_file():
        return None
    from kdlens.runs import model_spec

    # The architecture the name implies first; a student-named copy of the teacher also loads.
    specs: list[ModelSpec] = [model_spec(cfg, name)] + ([cfg.teacher] if name != "teacher" else [])
    for spec in specs:
        model = create_model(spec.model, shape, num_classes, **spec.model_args)
        try:
            load_weights(model, path, num_classes=num_classes)
        except CheckpointError:
            continue
        return model.to(device).eval()
    return None
