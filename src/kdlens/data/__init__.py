"""Datasets by name, splits, normalisation, augmentation and batching."""

from kdlens.data import embedded, vision  # noqa: F401  (fill the registry)
from kdlens.data.base import Dataset
from kdlens.data.loader import Batch, BatchLoader, is_augmenting
from kdlens.data.registry import DATASETS, check_dataset, create_dataset, list_datasets
from kdlens.data.split import Split, make_split
from kdlens.data.transforms import Normalizer

__all__ = [
    "DATASETS",
    "Batch",
    "BatchLoader",
    "Dataset",
    "Normalizer",
    "Split",
    "check_dataset",
    "create_dataset",
    "is_augmenting",
    "list_datasets",
    "make_split",
]
