"""What the explanations need, gathered from a live run or from a run folder on disk."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from kdlens.config import ExplainConfig, RunConfig, load_config
from kdlens.data import Normalizer
from kdlens.distill import compute_logits
from kdlens.errors import CheckpointError, ConfigError
from kdlens.utils import resolve_device

log = logging.getLogger("kdlens")


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
    distilled: str | None = "kd"  # the distilled student, whose disagreements are shown
    # Models with predictions but no gradient explanations, and why (shown in the report).
    skipped: dict[str, str] = field(default_factory=dict)
    texts: list[str] | None = None  # text data: the test examples' strings, shown for inputs

    def baseline(self) -> torch.Tensor:
        """The "absent" input for IG and deletion: a black image, or the mean of each feature."""
        zero = torch.zeros(1, *self.x.shape[1:])
        return self.normalizer(zero) if self.kind == "image" else zero


NO_GRADIENTS = {
    "logits": "known only by its saved outputs (logits:): no gradients to explain",
    "sklearn": "a scikit-learn model (sklearn:): no gradients to explain",
    "text": "text input: token ids have no gradients to explain",
}


def _explainable(models: dict[str, nn.Module], kind: str, families: dict[str, str]):
    """(models Captum can explain, {model: why not} for the others)."""
    keep, skipped = {}, {}
    for name, model in models.items():
        why = NO_GRADIENTS["text"] if kind == "text" else NO_GRADIENTS.get(families.get(name, ""))
        if why:
            skipped[name] = why
        elif model is not None:
            keep[name] = model
    return keep, skipped


def _test_texts(dataset, split) -> list[str] | None:
    if dataset.kind != "text" or dataset.texts is None:
        return None
    return [dataset.texts[i] for i in split.test]


def from_context(ctx) -> ExplainInputs:
    """Inputs from a :class:`kdlens.run.RunContext` that has been evaluated."""
    x, y = ctx.tensors("test")
    cfg: RunConfig = ctx.config
    families = {n: r.family for n, r in ctx.records.items()}
    torch_models = {n: m.eval() for n, m in ctx.models.items() if isinstance(m, nn.Module)}
    models, skipped = _explainable(torch_models, ctx.dataset.kind, families)
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
        models=models,
        seed=cfg.seed,
        distilled=_distilled(ctx.records),
        skipped=skipped,
        texts=_test_texts(ctx.dataset, ctx.split),
    )


def _distilled(records) -> str | None:
    from kdlens.run.records import select

    found = select(records, role="student", trained_with="teacher")
    return found[0] if found else None


def from_run_dir(run_dir: str | Path, overrides: list[str] | None = None) -> ExplainInputs:
    """Inputs rebuilt from a run folder (see :func:`kdlens.run.load_run`).

    Torch models with weights in the run are explained with Captum; the others (surrogates, int8
    models) take their logits from the run's saved test logits.
    """
    from kdlens.run import load_run

    for text in overrides or []:
        if not text.strip().startswith("explain."):
            # The run's data, split and models are fixed; only what is explained can change.
            raise ConfigError(f"--set {text!r}: a report can only change explain.* settings")
    run = load_run(run_dir, need_metrics=True)
    cfg = load_config(run.folder.config, overrides)
    x, y = run.tensors("test")
    device = resolve_device(cfg.device)
    saved = _saved_logits(run.folder.test_logits)
    models, logits = {}, {}
    for name in run.metrics["models"]:
        record = run.records.get(name)
        if record is not None and record.format == "safetensors":
            model = run.load_model(name).to(device)
            models[name] = model
            logits[name] = compute_logits(model, run.loader("test", device=device))
        elif name in saved:
            logits[name] = saved[name]
            if record is not None and record.role == "teacher":
                models[name] = None  # not rebuilt: saved outputs or an estimator
        else:
            log.warning("report: no predictions for model %r; it appears in the table only", name)
    families = {n: r.family for n, r in run.records.items()}
    models, skipped = _explainable(models, run.dataset.kind, families)
    return ExplainInputs(
        x=x,
        y=y,
        normalizer=run.normalizer,
        kind=run.dataset.kind,
        class_names=list(run.dataset.class_names),
        feature_names=list(run.dataset.feature_names),
        temperature=cfg.distill.temperature,
        config=cfg.explain,
        test_logits=logits,
        models=models,
        seed=cfg.seed,
        distilled=_distilled(run.records),
        skipped=skipped,
        texts=_test_texts(run.dataset, run.split),
    )


def _saved_logits(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        return {}
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} is corrupt ({e})") from None
