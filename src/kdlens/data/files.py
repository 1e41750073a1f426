"""Your own data from a file: ``data.name: npz:path/to/data.npz``.

The ``.npz`` (``numpy.savez``) holds ``x``: float inputs, (N, D) tabular, (N, H, W) grey images
or (N, C, H, W) images in [0, 1]; ``y``: (N,) integer labels in [0, K); and optionally
``class_names`` (K,) and ``feature_names`` (D,) as string arrays. Object arrays are refused
(``allow_pickle=False``): loading data never runs code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import Dataset
from kdlens.data.registry import register_source
from kdlens.errors import DataError


@register_source(
    "npz", help="<file> Your data as arrays x (N, ...) and y (N,) in a numpy .npz file."
)
def load_npz(path: str | Path) -> Dataset:
    p = Path(path).expanduser()
    name = f"npz:{path}"
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if not zipfile.is_zipfile(p):
        raise DataError(f"data file {p} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except ValueError as e:
        raise DataError(
            f"data file {p}: {str(e).splitlines()[0]} (object arrays are refused)"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"data file {p} is not a readable .npz file ({e})") from None
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"data file {p} has no array {key!r} (it has: {sorted(arrays)})")
    x, y = arrays["x"], arrays["y"]
    if not np.issubdtype(x.dtype, np.number) or x.ndim not in (2, 3, 4):
        raise DataError(
            f"data file {p}: x must be numbers shaped (N, D), (N, H, W) or (N, C, H, W), got {x.dtype} {x.shape}"
        )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"data file {p}: y must be (N,) integer labels, got {y.dtype} {y.shape}")
    if x.ndim == 3:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W)
    if x.ndim == 2 and x.shape[1] == 0:
        raise DataError(f"data file {p}: x has no features (shape {x.shape})")
    classes = [str(c) for c in arrays["class_names"]] if "class_names" in arrays else None
    k = _check_labels(p, y, classes)
    features = [str(c) for c in arrays.get("feature_names", [])]
    if features and (x.ndim != 2 or len(features) != x.shape[1]):
        raise DataError(
            f"data file {p}: {len(features)} feature_names for "
            f"{x.shape[1] if x.ndim == 2 else 'image'} features"
        )
    if x.ndim == 2 and not features:  # tables are read by feature name in figures and rules
        features = [f"x{i}" for i in range(x.shape[1])]
    return Dataset(
        name=name,
        x=torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32),
        y=torch.as_tensor(y, dtype=torch.long),
        kind="image" if x.ndim == 4 else "tabular",
        class_names=classes if classes is not None else [str(i) for i in range(max(k, 1))],
        feature_names=features,
    )


def _check_labels(path: Path, y: np.ndarray, classes: list[str] | None) -> int:
    """The number of classes: ``len(class_names)`` when given (the split then checks every class
    has training examples), else max label + 1, with every label 0..K-1 present, or one line
    naming at most five missing classes (a stray huge label must not allocate K classes)."""
    if classes is not None:
        return len(classes)  # labels outside 0..K-1 are refused by check_dataset
    if len(y) == 0:
        return 0
    present = np.unique(y[y >= 0])  # negative labels are refused by check_dataset
    k = int(present[-1]) + 1 if len(present) else 1
    if len(present) < k:
        missing, expected = [], 0
        for value in present.tolist() + [k]:  # walk the gaps without building range(k)
            while expected < value and len(missing) < 5:
                missing.append(expected)
                expected += 1
            expected = value + 1
            if len(missing) == 5:
                break
        more = k - len(present) - len(missing)
        tail = f" and {more:,} more" if more > 0 else ""
        raise DataError(
            f"data file {path}: labels run to {k - 1} but classes "
            f"{', '.join(map(str, missing))}{tail} have no example; labels must be 0..K-1"
        )
    return k
