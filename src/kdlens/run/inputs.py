"""What the run's models are fed, decided from the data: augmentation only for images, token ids
for text (the teacher's own tokenizer), the normaliser the loaders apply, and whether the data
stream from disk."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from kdlens.config import AugmentConfig, DataConfig, RunConfig, TrainConfig
from kdlens.data import Dataset, LazyRows, Normalizer, is_augmenting
from kdlens.data.lazy import GB
from kdlens.data.streaming import read_batches

NORMALIZER_BATCH = 512  # rows per read in the streaming pass over the training split

# The training sections a config can augment, by dotted path.
TRAIN_SECTIONS = ("teacher.train", "student.train", "readable.soft_tree.train")


def _section(config: RunConfig, path: str) -> TrainConfig:
    node = config
    for part in path.split("."):
        node = getattr(node, part)
    return node


def describe_augment(augment: AugmentConfig) -> str:
    parts = []
    if augment.shift:
        parts.append(f"shift {augment.shift}")
    if augment.flip:
        parts.append("flip")
    if augment.mixup:
        parts.append(f"mixup {augment.mixup:g}")
    return ", ".join(parts)


def image_only_augmentation(config: RunConfig, kind: str) -> tuple[RunConfig, list[str]]:
    """``config`` without augmentation when the data are not images, and a note per section.

    Shifts and flips move pixels, and mixup was tuned with them for images: a recipe written for
    images (configs/default.yaml) must not jitter a table's columns or mix token ids when only
    ``data.name`` changes.
    """
    if kind == "image":
        return config, []
    raw = config.model_dump()
    notes = []
    for path in TRAIN_SECTIONS:
        augment = _section(config, path).augment
        if not is_augmenting(augment):
            continue
        notes.append(
            f"{path}.augment ({describe_augment(augment)}) applies to images only; not used on "
            f"{kind} data"
        )
        node = raw
        for part in path.split("."):
            node = node[part]
        node["augment"] = AugmentConfig().model_dump()
    return (RunConfig.model_validate(raw) if notes else config), notes


def model_inputs(dataset: Dataset, teacher_model: str) -> Dataset:
    """``dataset`` as the models take it: a text dataset's strings become token ids (N, L) of the
    hf: teacher's tokenizer, stored as float32 (exact: ids are far below 2**24)."""
    if dataset.kind != "text" or dataset.x.shape[1:] != (0,):
        return dataset
    from kdlens.models.hf_models import tokenize

    folder = teacher_model.split(":", 1)[1]  # check_text_teacher: the teacher is hf:<folder>
    ids = tokenize(folder, dataset.texts or [])
    return dataclasses.replace(dataset, x=ids.float())


def fit_normalizer(dataset: Dataset, train: Sequence[int]) -> Normalizer:
    """Standardisation fitted on the training rows; none for token ids, which are not values.
    Streaming data: in one pass over the training rows, read batch by batch."""
    if dataset.kind == "text":
        width = dataset.x.shape[1]
        return Normalizer(torch.zeros(width), torch.ones(width))
    if isinstance(dataset.x, LazyRows):
        rows = dataset.x.select(torch.as_tensor(train))
        return Normalizer.fit_batches(read_batches(rows, NORMALIZER_BATCH))
    return Normalizer.fit(dataset.x[torch.as_tensor(train)])


def memory_notes(dataset: Dataset, data: DataConfig) -> list[str]:
    """What the run says about data above ``data.max_memory_gb``: that they stream, or that
    their source holds them in memory all the same."""
    if isinstance(dataset.x, LazyRows):
        return [
            f"data: the inputs take {dataset.x.nbytes / GB:.3g} GB decoded, above "
            f"data.max_memory_gb ({data.max_memory_gb:g}): they stay on disk and stream, batch "
            f"by batch, through {data.workers} DataLoader worker process"
            f"{'es' * (data.workers != 1)}"
        ]
    size = dataset.x.numel() * dataset.x.element_size() / GB
    if size > data.max_memory_gb:
        return [
            f"data: the inputs take {size:.3g} GB in memory, above data.max_memory_gb "
            f"({data.max_memory_gb:g}); only imagefolder:, hf: images and npz: data can stream, "
            f"{dataset.name} is held in memory"
        ]
    return []
