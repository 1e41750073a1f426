"""Figures of readable students, saved under ``RUN_DIR/figures/readable_*.png``.

Curves render from the saved ``complexity_curves`` JSON; the tree and weight figures render from
the fitted models themselves (their parameters are the explanation).
"""

from __future__ import annotations

import math
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

MAX_LEVELS = (
    4  # inner-node levels drawn: 15 filters stay legible; deeper ones are in the path figure
)
TOP_FEATURES = 8


def save_readable_figures(ctx, surrogates: dict[str, Any], test: dict[str, Any]) -> dict[str, list]:
    """Draw every readable student of the run; returns the saved file names (relative)."""
    figures_dir = ctx.out_dir / "figures"
    rules_dir = ctx.out_dir / "readable"
    figures_dir.mkdir(parents=True, exist_ok=True)
    ds = ctx.dataset
    saved: list[str] = []
    rules: list[str] = []

    def save(fig, name: str) -> None:
        fig.savefig(figures_dir / name, dpi=110, bbox_inches="tight")
        plt.close(fig)
        saved.append(f"figures/{name}")

    names = ds.feature_names or [f"x{i}" for i in range(test["raw"].shape[1])]
    if ds.kind == "image":
        names = [f"pixel_{i}" for i in range(test["raw"].shape[1])]
    for name in ("soft_tree_kd", "soft_tree_scratch"):
        model = ctx.models.get(name)
        if model is None:
            continue
        save(
            soft_tree_nodes_figure(model, ds.kind, ds.input_shape, names),
            f"readable_{name}_nodes.png",
        )
        save(soft_tree_leaves_figure(model, ds.class_names), f"readable_{name}_leaves.png")
        save(
            soft_tree_path_figure(
                model, test["x"][:1], ds.kind, ds.input_shape, names, ds.class_names
            ),
            f"readable_{name}_path.png",
        )
    for name, fitted in surrogates.items():
        # A surrogate knows the classes it was fitted on, which may be fewer than the data's
        # (a small sample, a teacher that never predicts some class).
        classes = [ds.class_names[int(c)] for c in getattr(fitted.estimator, "classes_", [])]
        if fitted.kind == "tree":
            from sklearn.tree import export_text

            rules_dir.mkdir(exist_ok=True)
            path = rules_dir / f"{name}_rules.txt"
            path.write_text(
                export_text(fitted.estimator, feature_names=names, class_names=classes, max_depth=6)
            )
            rules.append(f"readable/{path.name}")
            save(tree_figure(fitted.estimator, names, classes), f"readable_{name}.png")
        elif fitted.kind == "logistic":
            save(
                linear_weights_figure(
                    fitted.estimator.coef_, ds.kind, ds.input_shape, names, classes
                ),
                f"readable_{name}_weights.png",
            )
    for family, curve in ctx.metrics.get("complexity_curves", {}).items():
        save(complexity_curve_figure(family, curve), f"readable_curve_{family}.png")
    return {"figures": saved, "rules": rules}


def _filter_image(w: np.ndarray, input_shape) -> np.ndarray:
    """A node's filter as an (H, W) image: channels averaged, so colour data still reads."""
    return w.reshape(input_shape).mean(0)


def _top_weights_text(w: np.ndarray, names: list[str], k: int = 4) -> str:
    top = np.argsort(-np.abs(w))[:k]
    return "\n".join(f"{w[i]:+.2f} {names[i][:18]}" for i in top)


def _draw_node(ax, w: np.ndarray, kind: str, input_shape, names, fontsize: int) -> None:
    """One inner node's filter: an image of its weights (red pushes right), or its top weights."""
    if kind == "image":
        img = _filter_image(w, input_shape)
        lim = np.abs(img).max() or 1.0
        ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        text = _top_weights_text(w, names)
        ax.text(0.02, 0.5, text, family="monospace", fontsize=fontsize, va="center")
        ax.axis("off")


def soft_tree_nodes_figure(model, kind: str, input_shape, names: list[str]):
    """Inner nodes of the first levels, in tree layout: filters (images) or top weights."""
    levels = min(model.depth, MAX_LEVELS)
    cols = 2 ** (levels - 1)
    w = model.inner.weight.detach().cpu().numpy()
    beta = model.beta.detach().cpu().numpy()
    fig = plt.figure(figsize=(max(6, 1.6 * cols), 1.9 * levels))
    for level in range(levels):
        n = 2**level
        for j in range(n):
            node = n - 1 + j
            span = cols // n
            ax = plt.subplot2grid((levels, cols), (level, j * span), colspan=span, fig=fig)
            _draw_node(ax, w[node], kind, input_shape, names, fontsize=7)
            ax.set_title(f"node {node}  β={beta[node]:.2f}", fontsize=7)
    fig.suptitle("soft tree inner nodes (red: pushes right)", fontsize=9)
    return fig


def soft_tree_leaves_figure(model, class_names: list[str]):
    """Every leaf's class distribution as one row of a heat map."""
    probs = torch.softmax(model.leaf_logits.detach().cpu(), -1).numpy()
    fig, ax = plt.subplots(figsize=(1 + 0.4 * len(class_names), 1 + min(12, 0.12 * len(probs))))
    ax.imshow(probs, aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks(range(len(class_names)), class_names, fontsize=7)
    ax.set_ylabel("leaf")
    ax.set_title("leaf class distributions", fontsize=9)
    return fig


def soft_tree_path_figure(model, x: torch.Tensor, kind: str, input_shape, names, class_names):
    """One test example's most probable path: each node's filter, its branch and probability."""
    with torch.no_grad():
        a = model.node_logits(x.to(next(model.parameters()).device))[0].cpu()
        leaf = int(model.most_probable_leaf(x.to(next(model.parameters()).device))[0])
    steps = model.path_nodes(leaf, model.depth)
    w = model.inner.weight.detach().cpu().numpy()
    n = len(steps) + 2
    cols = min(n, 6)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.8 * cols, 2.0 * rows), squeeze=False)
    axes = axes.ravel()
    example = x[0].cpu().numpy()
    if kind == "image":
        axes[0].imshow(example.reshape(input_shape).mean(0), cmap="gray")
        axes[0].set_xticks([])
        axes[0].set_yticks([])
    else:
        axes[0].axis("off")
    axes[0].set_title("example (standardised)", fontsize=7)
    for i, (node, right) in enumerate(steps, 1):
        ax = axes[i]
        p = float(torch.sigmoid(a[node]))
        _draw_node(ax, w[node], kind, input_shape, names, fontsize=6)
        ax.set_title(f"node {node}: {'right' if right else 'left'}\np(right)={p:.2f}", fontsize=7)
    probs = torch.softmax(model.leaf_logits[leaf].detach().cpu(), -1).numpy()
    ax = axes[len(steps) + 1]
    ax.bar(range(len(class_names)), probs)
    ax.set_xticks(range(len(class_names)), class_names, fontsize=6)
    ax.set_title(f"leaf {leaf}", fontsize=7)
    for ax in axes[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def tree_figure(estimator, names: list[str], class_names: list[str]):
    from sklearn.tree import plot_tree

    # Ten-class value vectors are wide: draw fewer levels, the rules file has them all.
    levels = 3 if len(class_names) <= 3 else 2
    fig, ax = plt.subplots(figsize=(16, 7))
    plot_tree(
        estimator,
        max_depth=levels,
        precision=2,
        feature_names=names,
        class_names=class_names,
        filled=True,
        ax=ax,
        fontsize=6,
        impurity=False,
        proportion=True,
    )
    ax.set_title(
        f"decision tree (first {levels} of {estimator.get_depth()} levels; full rules in readable/)",
        fontsize=9,
    )
    return fig


def linear_weights_figure(coef: np.ndarray, kind: str, input_shape, names, class_names):
    """Per-class weights: images for image data, top features by |weight| for tabular data."""
    k = coef.shape[0]
    cols = min(k, 5)
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.2 * rows), squeeze=False)
    lim = np.abs(coef).max() or 1.0
    for c, ax in enumerate(axes.ravel()):
        if c >= k:
            ax.axis("off")
            continue
        label = class_names[c] if k == len(class_names) else class_names[-1]
        if kind == "image":
            ax.imshow(_filter_image(coef[c], input_shape), cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_xticks([])
            ax.set_yticks([])
        else:
            top = np.argsort(-np.abs(coef[c]))[:TOP_FEATURES][::-1]
            ax.barh(
                [names[i][:20] for i in top],
                coef[c][top],
                color=np.where(coef[c][top] > 0, "C3", "C0"),
            )
            ax.tick_params(labelsize=6)
        ax.set_title(f"class {label}: {np.count_nonzero(coef[c])} non-zero", fontsize=7)
    fig.tight_layout()
    return fig


def complexity_curve_figure(family: str, curve: dict[str, Any]):
    """Fidelity and accuracy against complexity, distilled vs hard labels."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    x = curve["values"]
    for ax, metric in zip(axes, ("fidelity", "accuracy"), strict=True):
        for arm, style in (("kd", "-o"), ("scratch", "--s")):
            label = "distilled (teacher soft targets)" if arm == "kd" else "hard labels"
            ax.plot(x, curve[arm][metric], style, label=label, markersize=3)
        ax.set_xlabel(curve["parameter"])
        ax.set_ylabel(f"test {metric}")
        if family == "logistic":
            ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{family}: fidelity and accuracy against complexity", fontsize=9)
    fig.tight_layout()
    return fig
