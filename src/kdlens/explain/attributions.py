"""Attributions with Captum, and how much two models' attributions agree.

Everything here works on *normalised* inputs, i.e. exactly what the models see.
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from scipy.stats import rankdata
from torch import nn

METHODS = ("integrated_gradients", "saliency", "grad_cam")


def last_conv_layer(model: nn.Module) -> tuple[str, nn.Module] | None:
    """The last Conv2d by module order: Grad-CAM's usual layer (Selvaraju et al. 2017)."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            found = (name, module)
    return found


def attribute(
    model: nn.Module,
    method: str,
    x: torch.Tensor,
    target: torch.Tensor,
    baseline: torch.Tensor,
    ig_steps: int = 32,
) -> torch.Tensor | None:
    """Attributions of ``target`` logits to ``x`` (same shape as ``x``); None if not applicable.

    Grad-CAM is upsampled to the input size and returns None for models without a conv layer.
    """
    device = next((p.device for p in model.parameters()), x.device)
    # Captum warns when it has to switch on input gradients itself; do it here, once.
    x, target = x.to(device).detach().requires_grad_(), target.to(device)
    if method == "integrated_gradients":
        ig = IntegratedGradients(model)
        base = baseline.to(device).expand_as(x)
        out = ig.attribute(
            x, baselines=base, target=target, n_steps=ig_steps, internal_batch_size=2048
        )
    elif method == "saliency":
        out = Saliency(model).attribute(x, target=target, abs=True)
    elif method == "grad_cam":
        conv = last_conv_layer(model)
        if conv is None or x.ndim != 4:
            return None
        cam = LayerGradCam(model, conv[1]).attribute(x, target=target, relu_attributions=True)
        out = LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), "bilinear")  # (B, 1, H, W)
        out = out.expand(-1, x.shape[1], -1, -1)
    else:
        raise ValueError(f"unknown attribution method {method!r}")
    return out.detach().float().cpu()


def _flat(a: torch.Tensor) -> np.ndarray:
    return a.reshape(len(a), -1).double().numpy()


def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Spearman rank correlation per example (ties get average ranks); NaN for constant rows."""
    ra, rb = rankdata(_flat(a), axis=1), rankdata(_flat(b), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (ra * rb).sum(1) / denom


def cosine_rows(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    fa, fb = _flat(a), _flat(b)
    denom = np.linalg.norm(fa, axis=1) * np.linalg.norm(fb, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (fa * fb).sum(1) / denom


def topk_overlap_rows(a: torch.Tensor, b: torch.Tensor, fraction: float) -> np.ndarray:
    """|top-k(|a|) ∩ top-k(|b|)| / k with k = fraction of the features; chance level is ~fraction."""
    fa, fb = np.abs(_flat(a)), np.abs(_flat(b))
    k = max(1, round(fraction * fa.shape[1]))
    ta = np.argsort(-fa, axis=1, kind="stable")[:, :k]
    tb = np.argsort(-fb, axis=1, kind="stable")[:, :k]
    return np.array([len(np.intersect1d(p, q)) / k for p, q in zip(ta, tb, strict=True)])


def agreement(a: torch.Tensor, b: torch.Tensor, topk: float) -> dict[str, float]:
    """Mean per-example agreement of two attribution sets over the same examples and targets.

    Spearman and cosine use signed attributions (direction matters: evidence for vs against);
    the top-k overlap uses magnitudes (which features matter most).
    """
    return {
        "spearman": _nanmean(spearman_rows(a, b)),
        "cosine": _nanmean(cosine_rows(a, b)),
        "topk_overlap": _nanmean(topk_overlap_rows(a, b, topk)),
    }


def _nanmean(v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(v.mean()) if len(v) else float("nan")
