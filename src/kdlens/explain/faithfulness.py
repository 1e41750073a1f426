"""Is an attribution faithful to the model? Deletion curves and Captum's infidelity."""

from __future__ import annotations

import numpy as np
import torch
from captum.metrics import infidelity as captum_infidelity
from torch import nn


@torch.no_grad()
def deletion_curve(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attributions: torch.Tensor,
    baseline: torch.Tensor,
    steps: int = 20,
    order: str = "attribution",
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """Accuracy as the most-attributed features are replaced by the baseline, in ``steps`` steps.

    ``order="random"`` deletes features in a random order instead: the curve a useless
    attribution would give. Returns (fractions removed, accuracies).
    """
    device = next((p.device for p in model.parameters()), x.device)
    n, d = len(x), x[0].numel()
    flat_x = x.reshape(n, d)
    flat_base = baseline.expand_as(x).reshape(n, d)
    if order == "random":
        g = torch.Generator().manual_seed(seed)
        ranks = torch.stack([torch.randperm(d, generator=g) for _ in range(n)])
    else:
        # Most positive evidence for the class first (Petsiuk et al. 2018, RISE "deletion").
        ranks = attributions.reshape(n, d).argsort(dim=1, descending=True, stable=True)
    fractions = np.linspace(0.0, 1.0, steps + 1)
    accs = []
    for f in fractions:
        k = round(f * d)
        removed = torch.zeros(n, d, dtype=torch.bool)
        removed.scatter_(1, ranks[:, :k], True)
        xs = torch.where(removed, flat_base, flat_x).reshape(x.shape)
        pred = model(xs.to(device)).argmax(-1).cpu()
        accs.append(float((pred == y).float().mean()))
    return fractions.tolist(), accs


def area_under(fractions: list[float], values: list[float]) -> float:
    """Trapezoid area; for a deletion curve lower means the attribution found what mattered."""
    f, v = np.asarray(fractions), np.asarray(values)
    return float(((v[1:] + v[:-1]) / 2 * np.diff(f)).sum())


def infidelity(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    attributions: torch.Tensor,
    n_perturb_samples: int = 10,
    noise: float = 0.1,
    seed: int = 0,
) -> float:
    """Mean Captum infidelity (Yeh et al. 2019) under Gaussian perturbations of std ``noise``.

    ``normalize=True`` rescales attributions by the best scalar first, so the number measures
    the shape of an explanation, not its units; lower is more faithful.
    """
    device = next((p.device for p in model.parameters()), x.device)
    g = torch.Generator(device=device).manual_seed(seed)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        eps = torch.randn(inputs.shape, generator=g, device=inputs.device) * noise
        return eps, inputs - eps

    with torch.no_grad():
        scores = captum_infidelity(
            model,
            perturb,
            x.to(device),
            attributions.to(device),
            target=target.to(device),
            n_perturb_samples=n_perturb_samples,
            # Captum wants batch <= this <= batch * samples: one example's samples per chunk minimum.
            max_examples_per_batch=min(len(x) * n_perturb_samples, max(256, len(x))),
            normalize=True,
        )
    return float(scores.float().mean())


@torch.no_grad()
def output_change(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    n_perturb_samples: int = 10,
    noise: float = 0.1,
    seed: int = 0,
) -> float:
    """Mean squared change of the ``target`` logit under the noise :func:`infidelity` uses.

    Infidelity is in these units (squared logits): a model whose output reacts more to the noise
    gets a larger infidelity for equally good attributions; dividing by this makes it comparable
    across models (0: the attributions predict all of the change, about 1: none of it).
    """
    device = next((p.device for p in model.parameters()), x.device)
    x, target = x.to(device), target.to(device)
    g = torch.Generator(device=device).manual_seed(seed + 1)
    clean = model(x).gather(1, target[:, None])
    total = 0.0
    for _ in range(n_perturb_samples):
        eps = torch.randn(x.shape, generator=g, device=device) * noise
        total += float(((clean - model(x - eps).gather(1, target[:, None])) ** 2).mean())
    return total / n_perturb_samples


@torch.no_grad()
def kept_without_positive(
    model: nn.Module, x: torch.Tensor, attributions: torch.Tensor, baseline: torch.Tensor
) -> tuple[float, float]:
    """(share of features with positive attribution, share of examples whose predicted class
    survives replacing all of them by the baseline).

    On images with a blank background few features have positive IG, so a deletion curve is flat
    once they are gone: its area is mostly the second number.
    """
    device = next((p.device for p in model.parameters()), x.device)
    positive = attributions > 0
    removed = torch.where(positive, baseline.expand_as(x), x)
    before = model(x.to(device)).argmax(-1)
    after = model(removed.to(device)).argmax(-1)
    return float(positive.float().mean()), float((before == after).float().mean())
