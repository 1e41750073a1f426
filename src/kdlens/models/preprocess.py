"""Each model gets the input it expects: ``teacher.preprocess`` / ``student.preprocess``.

Every loader of a run gives all models the same example, (augmented and) standardised with the
training split's statistics (the run's normaliser). A model that expects something else, such as
a pretrained network's raw or ImageNet-normalised pixels at its own resolution, is wrapped in
:class:`Preprocess`, which undoes the run's standardisation and applies the model's own. Training,
evaluation, explanations and export then see one module, and a teacher still sees exactly the
student's augmented example.

The resolved preprocessing (plain numbers, see :func:`resolve_preprocess`) is saved with the
model's record, so a reopened run rebuilds the same wrapper without the model's config files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.config import MeanStd, PreprocessConfig
from kdlens.errors import CheckpointError, ConfigError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Preprocess(nn.Module):
    """``model`` fed ``resize(raw)`` normalised with ``mean``/``std``, where ``raw`` undoes the
    run's standardisation of the input: ``x * run_std + run_mean``.

    ``mean``/``std`` None leave the raw values (images in [0, 1], tables in their units). The
    statistics are buffers that are not saved: the record's ``preprocess`` says them. The state
    dict is the model's own (no ``model.`` prefix), so a run's weights file loads into the bare
    model, e.g. as another run's ``teacher.checkpoint``.
    """

    def __init__(
        self,
        model: nn.Module,
        run_mean: torch.Tensor,
        run_std: torch.Tensor,
        resolved: dict[str, Any],
    ):
        super().__init__()
        self.model = model
        self.resolved = resolved
        self.register_buffer("run_mean", run_mean.float().clone(), persistent=False)
        self.register_buffer("run_std", run_std.float().clone(), persistent=False)
        shape = run_mean.shape  # (C, 1, 1) for images, (D,) for tables
        mean, std = resolved.get("mean"), resolved.get("std")
        self.normalize = mean is not None
        if self.normalize:
            self.register_buffer("mean", _stat(mean, shape), persistent=False)
            self.register_buffer("std", _stat(std, shape), persistent=False)
        self.resize = tuple(resolved["resize"]) if resolved.get("resize") else None
        self.register_state_dict_post_hook(_drop_prefix)
        self.register_load_state_dict_pre_hook(_add_prefix)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raw = x * self.run_std + self.run_mean  # what the data held: (B, C, H, W) or (B, D)
        if self.resize is not None and tuple(raw.shape[-2:]) != self.resize:
            shrink = self.resize[0] < raw.shape[-2] or self.resize[1] < raw.shape[-1]
            raw = F.interpolate(
                raw, size=self.resize, mode="bilinear", align_corners=False, antialias=shrink
            )
        if self.normalize:
            raw = (raw - self.mean) / self.std
        return self.model(raw)


def _drop_prefix(module, state_dict, prefix, local_metadata) -> None:
    inner = prefix + "model."
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _add_prefix(module, state_dict, prefix, *args) -> None:
    # Every key under this module is the inner model's (the wrapper saves nothing of its own).
    for key in [k for k in state_dict if k.startswith(prefix)]:
        state_dict[prefix + "model." + key[len(prefix) :]] = state_dict.pop(key)


def _stat(values: Sequence[float], shape: torch.Size) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float32)
    return t.view(-1, 1, 1) if len(shape) == 3 else t


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a :class:`Preprocess`, or ``model`` itself."""
    return model.model if isinstance(model, Preprocess) else model


def resolve_preprocess(
    cfg: PreprocessConfig,
    model: nn.Module,
    input_shape: tuple[int, ...],
    run_mean: torch.Tensor,
    run_std: torch.Tensor,
    where: str,
) -> dict[str, Any] | None:
    """The preprocessing of ``cfg`` for ``model`` as plain numbers, or None when the model takes
    the run's standardised input as it is (``normalize: fit``, no resize).

    ``{"normalize": name, "mean": [...] | None, "std": [...] | None, "resize": [H, W] | None}``;
    ``where`` (``teacher.preprocess``) starts every error.
    """
    if cfg.is_identity:
        return None
    image = len(input_shape) == 3
    normalize: Any = cfg.normalize
    resize = list(cfg.resize) if cfg.resize else None
    if cfg.from_model:
        found = model_preprocessing(model, where)
        if normalize == "fit":
            normalize = MeanStd(mean=found["mean"], std=found["std"]) if found["mean"] else "none"
        if resize is None and found["resize"] and list(found["resize"]) != list(input_shape[1:]):
            resize = list(found["resize"])
    if resize is not None and not image:
        raise ConfigError(f"{where}.resize: only images can be resized; the data is {input_shape}")
    if normalize == "imagenet" and not image:
        raise ConfigError(f"{where}.normalize: imagenet statistics are for images")
    channels = input_shape[0] if input_shape else 1  # image channels, or table features
    if normalize == "fit":
        mean, std = run_mean.flatten().tolist(), run_std.flatten().tolist()
    elif normalize == "none":
        mean = std = None
    elif normalize == "imagenet":
        mean = _per_channel(IMAGENET_MEAN, channels, f"{where}.normalize")
        std = _per_channel(IMAGENET_STD, channels, f"{where}.normalize")
    else:
        mean = _per_channel(normalize.mean, channels, f"{where}.normalize.mean")
        std = _per_channel(normalize.std, channels, f"{where}.normalize.std")
    name = normalize if isinstance(normalize, str) else "mean_std"
    if cfg.from_model and cfg.normalize == "fit":
        name = "from_model"
    return {"normalize": name, "mean": mean, "std": std, "resize": resize}


def _per_channel(values: Sequence[float], channels: int, where: str) -> list[float]:
    """One value per channel (feature): one value is repeated; three colour statistics on grey
    images become their average (a grey pixel stands for equal red, green and blue)."""
    values = [float(v) for v in values]
    if len(values) == channels:
        return values
    if len(values) == 1:
        return values * channels
    if len(values) == 3 and channels == 1:
        return [sum(values) / 3]
    raise ConfigError(f"{where}: {len(values)} values for data with {channels} channels/features")


def model_preprocessing(model: nn.Module, where: str) -> dict[str, Any]:
    """``{"mean", "std", "resize"}`` from a timm model's pretrained config or a transformers
    image classifier's saved image processor (``from_model``)."""
    from kdlens.models.hf_models import HFImageClassifier

    inner = unwrap(model)
    hf = next((m for m in inner.modules() if isinstance(m, HFImageClassifier)), None)
    if hf is not None:
        return _hf_processor(hf.folder, where)
    pretrained_cfg = getattr(inner, "pretrained_cfg", None)
    if isinstance(pretrained_cfg, dict) and pretrained_cfg:
        import timm.data

        cfg = timm.data.resolve_data_config(model=inner)
        return {"mean": list(cfg["mean"]), "std": list(cfg["std"]), "resize": cfg["input_size"][1:]}
    raise ConfigError(
        f"{where}.from_model: only timm: and hf: image models bring their own preprocessing; "
        "set normalize and resize instead"
    )


def _hf_processor(folder: str, where: str) -> dict[str, Any]:
    from kdlens.models.hf_models import quiet
    from kdlens.models.optional import import_optional

    transformers = import_optional("transformers", "hf", where)
    with quiet(transformers):
        try:
            processor = transformers.AutoImageProcessor.from_pretrained(
                folder, local_files_only=True
            )
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(
                f"{where}.from_model: no image processor in {folder} ({first_line(e)}); save one "
                "with processor.save_pretrained there, or set normalize and resize"
            ) from None
    out: dict[str, Any] = {"mean": None, "std": None, "resize": None}
    if getattr(processor, "do_normalize", False) and processor.image_mean is not None:
        out["mean"], out["std"] = list(processor.image_mean), list(processor.image_std)
    size = getattr(processor, "size", None) or {}
    if getattr(processor, "do_resize", False) and "height" in size and "width" in size:
        out["resize"] = [int(size["height"]), int(size["width"])]
    return out


def wrap(model: nn.Module, resolved: dict[str, Any] | None, run_mean, run_std) -> nn.Module:
    """``model`` in a :class:`Preprocess` for ``resolved``; ``model`` itself for None."""
    if resolved is None:
        return model
    return Preprocess(model, run_mean, run_std, resolved)
