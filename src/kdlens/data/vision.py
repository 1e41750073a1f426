"""torchvision datasets: real loading code, downloaded only when ``data.download`` is true."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import TEST, TRAIN, Dataset
from kdlens.data.registry import register_dataset
from kdlens.errors import DataError

DEFAULT_ROOT = Path(os.environ.get("KDLENS_DATA", "~/.cache/kdlens/data")).expanduser()

# name -> (torchvision class name, folder torchvision expects under root)
_SOURCES = {
    "mnist": ("MNIST", "MNIST/raw"),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
}


def _load_split(name: str, root: Path, train: bool, download: bool):
    import torchvision.datasets as tvd

    cls_name, folder = _SOURCES[name]
    try:
        return getattr(tvd, cls_name)(str(root), train=train, download=download)
    except RuntimeError as e:
        if "not found" in str(e).lower() or "corrupted" in str(e).lower():
            how = (
                "it could not be downloaded" if download else "set data.download: true to fetch it"
            )
            raise DataError(
                f"dataset {name!r} not found in {root / folder} ({how}, or data.root to its folder)"
            ) from None
        raise DataError(f"dataset {name!r}: {e}") from None
    except OSError as e:  # no network, DNS failure, refused connection
        raise DataError(
            f"dataset {name!r} could not be downloaded to {root / folder}: {e.__class__.__name__}: "
            f"{str(e).splitlines()[0] if str(e) else 'no network'}"
        ) from None


def _to_images(data) -> torch.Tensor:
    arr = data.numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
    x = torch.as_tensor(arr, dtype=torch.float32) / 255.0
    if x.ndim == 3:  # (N, H, W) grey
        return x.unsqueeze(1)
    return x.permute(0, 3, 1, 2).contiguous()  # (N, H, W, C) colour -> (N, C, H, W)


def _make_loader(name: str):
    def load(root: str | None = None, download: bool = False) -> Dataset:
        folder = Path(root).expanduser() if root else DEFAULT_ROOT
        train = _load_split(name, folder, True, download)
        test = _load_split(name, folder, False, download)
        x = torch.cat([_to_images(train.data), _to_images(test.data)])
        y = torch.cat([torch.as_tensor(train.targets), torch.as_tensor(test.targets)]).long()
        fixed = torch.full((len(y),), TRAIN, dtype=torch.int8)
        fixed[len(train.targets) :] = TEST
        return Dataset(name, x, y, "image", [str(c) for c in train.classes], fixed_split=fixed)

    return load


for _name, (_cls, _folder) in _SOURCES.items():
    register_dataset(
        _name, help=f"The torchvision {_cls} dataset (needs data.root or data.download)."
    )(_make_loader(_name))
