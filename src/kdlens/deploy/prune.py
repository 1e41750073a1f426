"""Magnitude pruning with ``torch.nn.utils.prune``: masks stay fixed while fine-tuning, then are
made permanent.

* ``unstructured``: the smallest-|w| fraction of all Linear and Conv weights, ranked globally
  (layers lose different shares). Exactly ``round(amount * n)`` weights are zeroed.
* ``channels``: in every Conv layer, the ``round(amount * C)`` output channels with the smallest
  L1 norm (Li et al. 2017). Zeroed, not removed: the tensor shapes, file size and counted FLOPs
  stay those of the dense model, and a batch-norm shift after a pruned channel is kept.
"""

from __future__ import annotations

from torch import nn
from torch.nn.utils import prune

STRUCTURES = ("unstructured", "channels")


def _layers(model: nn.Module, kinds: tuple[type, ...]) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, kinds)]


def prunable_layers(model: nn.Module) -> list[nn.Module]:
    return _layers(model, (nn.Linear, nn.modules.conv._ConvNd))


def conv_layers(model: nn.Module) -> list[nn.Module]:
    return _layers(model, (nn.modules.conv._ConvNd,))


def prune_model(model: nn.Module, amount: float, structure: str = "unstructured") -> nn.Module:
    """Attach pruning masks to ``model`` in place (``amount`` in [0, 1)); returns it."""
    if not 0 <= amount < 1:
        raise ValueError(f"pruning amount must be in [0, 1), got {amount}")
    if structure == "unstructured":
        params = [(m, "weight") for m in prunable_layers(model)]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    elif structure == "channels":
        convs = conv_layers(model)
        if not convs:
            raise ValueError("channel pruning needs a model with convolutions")
        for m in convs:
            prune.ln_structured(m, "weight", amount=amount, n=1, dim=0)
    else:
        raise ValueError(f"unknown pruning structure {structure!r}; expected one of {STRUCTURES}")
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Fold masks into the weights and drop the pruning hooks (a plain model again)."""
    for m in prunable_layers(model):
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            prune.remove(m, "weight")
    return model


def weight_sparsity(model: nn.Module) -> dict[str, int | float]:
    """Zero weights among all Linear and Conv weights (what unstructured pruning counts)."""
    zeros = total = 0
    for m in prunable_layers(model):
        w = m.weight
        zeros += int((w == 0).sum())
        total += w.numel()
    return {"zero_weights": zeros, "weights": total, "sparsity": zeros / total if total else 0.0}


def channel_sparsity(model: nn.Module) -> dict[str, int | float]:
    """Conv output channels whose whole filter is zero (what channel pruning counts)."""
    zeros = total = 0
    for m in conv_layers(model):
        w = m.weight.detach().flatten(1)  # (C_out, C_in * k * k)
        zeros += int((w.abs().sum(1) == 0).sum())
        total += w.shape[0]
    return {"zero_channels": zeros, "channels": total, "sparsity": zeros / total if total else 0.0}
