"""Datasets by name, splits, normalisation, augmentation and batching."""

from kdlens.data import embedded, files, hf_datasets, images, tables, vision  # noqa: F401  (fill the registries)
from kdlens.data.base import Dataset
from kdlens.data.lazy import LazyRows
from kdlens.data.loader import Batch, BatchLoader, is_augmenting
from kdlens.data.record import restore_dataset, save_dataset_record
from kdlens.data.registry import (
    DATASETS,
    SOURCES,
    check_dataset,
    check_text_teacher,
    create_dataset,
    dataset_from_config,
    list_datasets,
    list_sources,
)
from kdlens.data.split import Split, make_split
from kdlens.data.transforms import Normalizer

__all__ = [
    "DATASETS",
    "SOURCES",
    "Batch",
    "BatchLoader",
    "Dataset",
    "LazyRows",
    "Normalizer",
    "Split",
    "check_dataset",
    "check_text_teacher",
    "create_dataset",
    "dataset_from_config",
    "is_augmenting",
    "list_datasets",
    "list_sources",
    "make_split",
    "restore_dataset",
    "save_dataset_record",
]
