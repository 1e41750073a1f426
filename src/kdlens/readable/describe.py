"""Fitted readable students as JSON-ready dicts: what their figures and rules are drawn from.

Compute -> JSON -> render: the readable stage saves these in ``readable/readable.json`` and
:mod:`kdlens.readable.figures` draws from that file alone. Input-sized arrays (node filters,
weights, an example) are stored as drawn: an (H, W) channel mean for images, the feature vector
for tabular data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kdlens.readable.estimators import SoftTargetLogistic, SoftTargetTree

MAX_LEVELS = 4  # inner-node levels of a soft tree drawn: 15 filters stay legible
DIGITS = 4


def _round(a: Any) -> list:
    return np.round(np.asarray(a, dtype=float), DIGITS).tolist()


def input_view(x: np.ndarray, kind: str, input_shape: tuple[int, ...]) -> list:
    """An input-sized vector as drawn: an (H, W) channel mean for images, else the vector."""
    x = np.asarray(x, dtype=float)
    if kind == "image":
        return _round(x.reshape(input_shape).mean(0))
    return _round(x.ravel())


def dataset_header(
    kind: str, input_shape: tuple[int, ...], class_names: list[str], feature_names: list[str] | None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "input_shape": list(input_shape),
        "class_names": list(class_names),
        "feature_names": None if kind == "image" else feature_names,
    }


@torch.no_grad()
def describe_soft_tree(
    model,
    example: torch.Tensor,
    example_raw: np.ndarray,
    label: int,
    kind: str,
    levels: int = MAX_LEVELS,
) -> dict[str, Any]:
    """Filters of the first ``levels`` levels, every leaf's distribution, and the most probable
    path of ``example`` (standardised, (1, ...); ``example_raw`` in the data's units)."""
    shape = tuple(model.input_shape)
    w = model.inner.weight.detach().cpu().numpy()  # (N, D)
    x = example.to(next(model.parameters()).device)
    node_logits = model.node_logits(x)[0].cpu()
    leaf = int(model.most_probable_leaf(x)[0])
    steps = [
        {"node": node, "right": bool(right), "p_right": float(torch.sigmoid(node_logits[node]))}
        for node, right in model.path_nodes(leaf, model.depth)
    ]
    shown = min(model.depth, levels)
    nodes = sorted(set(range(2**shown - 1)) | {s["node"] for s in steps})
    leaves = torch.softmax(model.leaf_logits.detach().cpu(), -1).numpy()
    return {
        "depth": model.depth,
        "levels_shown": shown,
        "beta": _round(model.beta.detach().cpu().numpy()),
        "filters": {str(n): input_view(w[n], kind, shape) for n in nodes},
        "leaves": _round(leaves),
        "path": {
            "label": int(label),
            "input": input_view(example_raw, kind, shape),
            "steps": steps,
            "leaf": leaf,
        },
    }


def _full_columns(est, values: np.ndarray, num_classes: int) -> np.ndarray:
    """(rows, classes the fitted estimator saw) -> (rows, num_classes)."""
    out = np.zeros((len(values), num_classes))
    out[:, est.classes_[np.asarray(est.estimator_.classes_, dtype=int)].astype(int)] = values
    return out


def describe_tree(est: SoftTargetTree, num_classes: int) -> dict[str, Any]:
    """The whole fitted tree as arrays (sklearn's ``tree_``), thresholds in the units it was fitted
    on; ``value`` is each node's class distribution, ``share`` its share of the training weight."""
    t = est.estimator_.tree_
    value = t.value[:, 0, :]
    value = value / np.maximum(value.sum(1, keepdims=True), 1e-12)
    n = t.weighted_n_node_samples
    return {
        **est.complexity(),
        "children_left": t.children_left.tolist(),
        "children_right": t.children_right.tolist(),
        "feature": t.feature.tolist(),
        "threshold": [float(v) for v in t.threshold],
        "value": _round(_full_columns(est, value, num_classes)),
        "share": _round(n / n[0]),
    }


def describe_logistic(
    est: SoftTargetLogistic, kind: str, input_shape: tuple[int, ...]
) -> dict[str, Any]:
    """Weights per class (standardised features); a binary model has one row, for its second class."""
    coef = est.estimator_.coef_
    seen = est.classes_[np.asarray(est.estimator_.classes_, dtype=int)].astype(int)
    classes = seen[1:] if coef.shape[0] == 1 else seen
    return {
        **est.complexity(),
        "classes": classes.tolist(),
        "weights": [input_view(c, kind, input_shape) for c in coef],
        "nonzero": [int(np.count_nonzero(c)) for c in coef],
    }
