"""A Hugging Face ``datasets`` folder: ``data.name: hf:PATH`` (written by ``save_to_disk``).

A ``DatasetDict`` with ``train`` (and ``validation`` or ``val``, ``test``) gives the split; other
parts (``unsupervised``) are not read. A single ``Dataset`` is split by kdlens. The input is an
image column (``datasets.Image``, decoded as for ``imagefolder:``) or a text column; the labels a
``ClassLabel`` column (its names become the class names) or any column of class values.
``data.image``, ``data.text`` and ``data.target`` name the columns when they are not found alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import TEST, TRAIN, VAL, Dataset
from kdlens.data.images import ImageRows, read_images
from kdlens.data.registry import register_source
from kdlens.data.tables import encode_labels
from kdlens.errors import DataError

SPLIT_NAMES = {"train": TRAIN, "validation": VAL, "val": VAL, "test": TEST}
LABEL_NAMES = ("label", "labels")  # looked for when no column is a ClassLabel


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError("hf: data needs the datasets package: pip install 'kdlens[hf]'") from None
    return datasets


@register_source("hf", help="<folder> A Hugging Face datasets folder written by save_to_disk.")
def load_hf_dataset(
    path: str,
    target: str | None = None,
    text: str | None = None,
    image: str | None = None,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    skip_bad_files: bool = False,
    max_memory_gb: float | None = None,
) -> Dataset:
    ds = _datasets()
    folder = Path(path).expanduser()
    name = f"hf:{path}"
    if not folder.is_dir():
        raise DataError(f"datasets folder not found: {folder}")
    try:
        saved = ds.load_from_disk(str(folder))
    except FileNotFoundError:
        raise DataError(
            f"{folder} is not a folder written by datasets' save_to_disk (no dataset_info.json "
            "or dataset_dict.json)"
        ) from None
    parts = _parts(saved, ds, name)
    features = parts[0][2].features
    columns = list(features)
    if text is not None and image is not None:
        raise DataError(f"{name}: set data.image or data.text, not both")
    target = target or _label_column(features, ds, name)
    if text is None and image is None:
        images = [c for c, f in features.items() if isinstance(f, ds.Image)]
        if len(images) == 1:
            image = images[0]
        elif "text" in columns:
            text = "text"
        else:
            raise DataError(
                f"{name}: set data.image or data.text to the input column (columns: {columns})"
            )
    for field, col in (("target", target), ("text", text), ("image", image)):
        if col is not None and col not in columns:
            raise DataError(f"{name}: no column {col!r} for data.{field} (columns: {columns})")
    if image is not None and not isinstance(features[image], ds.Image):
        raise DataError(
            f"{name}: column {image!r} for data.image holds {features[image]}, not images"
        )

    labels, fixed = [], []
    for _, code, part in parts:
        labels += list(part[target])
        fixed += [code] * len(part)
    y, classes = _labels(labels, features[target], ds, f"{name}: label column {target!r}")
    fixed_split = torch.as_tensor(fixed, dtype=torch.int8) if len(parts) > 1 else None
    if text is not None:
        texts = [t for *_, part in parts for t in part[text]]
        if any(t is None for t in texts):
            raise DataError(f"{name}: text column {text!r} has missing values")
        n = len(texts)
        return Dataset(
            name, torch.zeros(n, 0), y, "text", classes, fixed_split=fixed_split, texts=texts
        )

    rows = HFImages(str(folder), name, [(split, len(part)) for split, _, part in parts], image)
    rows.preload([part for *_, part in parts])
    x, kept, skipped = read_images(rows, image_size, channels, skip_bad_files, max_memory_gb)
    keep = torch.as_tensor(kept, dtype=torch.long)
    return Dataset(
        name,
        x,
        y[keep],
        "image",
        classes,
        fixed_split=None if fixed_split is None else fixed_split[keep],
        skipped_files=skipped,
    )


def _parts(saved, ds, name: str) -> list[tuple[str, int, object]]:
    """(split name, TRAIN/VAL/TEST, dataset) in that order; a single Dataset is all TRAIN."""
    if not isinstance(saved, ds.DatasetDict):
        return [("", TRAIN, saved)]
    known = [(k, SPLIT_NAMES[k], v) for k, v in saved.items() if k in SPLIT_NAMES]
    names = [k for k, _, _ in known]
    if "train" not in names:
        raise DataError(f"{name}: no 'train' split (splits: {list(saved)})")
    if "val" in names and "validation" in names:
        raise DataError(f"{name}: has both 'val' and 'validation' splits: keep one")
    return sorted(known, key=lambda p: p[1])


def _label_column(features, ds, name: str) -> str:
    found = [c for c, f in features.items() if isinstance(f, ds.ClassLabel)]
    if len(found) != 1:
        found = [c for c in LABEL_NAMES if c in features]
    if not found:
        raise DataError(f"{name}: set data.target to the label column (columns: {list(features)})")
    return found[0]


def _labels(values: list, feature, ds, where: str) -> tuple[torch.Tensor, list[str]]:
    if isinstance(feature, ds.ClassLabel):
        y = np.asarray(values, dtype=np.int64)
        if (y < 0).any():  # datasets' "no label"
            raise DataError(f"{where} has {int((y < 0).sum())} rows without a label (-1)")
        if feature.num_classes < 2:
            raise DataError(f"{where} has one class; a classifier needs two or more")
        return torch.as_tensor(y), list(feature.names)
    return encode_labels(values, where)


class HFImages(ImageRows):
    """The image column of a datasets folder's parts, read row by row: ``load_from_disk``
    memory-maps the Arrow files, once per process (a DataLoader worker opens its own)."""

    def __init__(self, folder: str, name: str, parts: list[tuple[str, int]], column: str):
        self.folder, self.dataset_name, self.column = folder, name, column
        self.splits = [split for split, _ in parts]
        self.starts = np.cumsum([0] + [n for _, n in parts])  # first row of each part
        self._parts: list | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_parts": None}  # workers memory-map the files themselves

    def preload(self, parts: list) -> None:
        """Use the parts already loaded by this process."""
        ds = _datasets()
        self._parts = [
            p.cast_column(self.column, ds.Image(decode=False)).select_columns([self.column])
            for p in parts
        ]

    def _load(self) -> list:
        if self._parts is None:
            saved = _datasets().load_from_disk(self.folder)
            self.preload([saved[s] if s else saved for s in self.splits])
        return self._parts

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _item(self, row: int) -> tuple[int, int, dict]:
        part = int(np.searchsorted(self.starts, row, side="right")) - 1
        local = row - int(self.starts[part])
        return part, local, self._load()[part][local][self.column]  # {"bytes", "path"}

    def _where(self, part: int, local: int, item: dict) -> str:
        split = self.splits[part]
        where = f"{self.dataset_name} {split}" if split else self.dataset_name
        return item["path"] or f"{where} row {local}"

    def name(self, row: int) -> str:
        return self.pair(row)[0]

    def source(self, row: int) -> str | bytes:
        return self.pair(row)[1]

    def pair(self, row: int) -> tuple[str, str | bytes]:
        part, local, item = self._item(row)
        return self._where(part, local, item), item["bytes"] or item["path"]

    def pairs(self) -> list[tuple[str, str | bytes]]:
        out = []
        for k, part in enumerate(self._load()):
            for i, item in enumerate(part[self.column]):  # the whole column at once: fast
                out.append((self._where(k, i, item), item["bytes"] or item["path"]))
        return out
