"""The dataset record of a run folder: what the run's data was and what was fitted on its training split.

Class names (a table's labels, a folder's class folders) and feature names ("color=red") are
saved so the report shows them; ``prepared`` holds the state of :meth:`Dataset.prepare` (a table's
categories and medians), re-applied when a run is reopened instead of being fitted again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdlens.data.base import Dataset
from kdlens.errors import CheckpointError
from kdlens.utils import read_json, write_json


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    return {
        "name": dataset.name,
        "kind": dataset.kind,
        "class_names": list(dataset.class_names),
        "feature_names": list(dataset.feature_names),
        "skipped_files": list(dataset.skipped_files),
        "streaming": dataset.streaming,
        "prepared": dataset.state_dict(),
    }


def save_dataset_record(dataset: Dataset, path: str | Path) -> None:
    """Write the record to ``path`` (a run's ``RunFolder.dataset_record``)."""
    write_json(path, dataset_record(dataset))


def restore_dataset(dataset: Dataset, train: Sequence[int], path: str | Path) -> Dataset:
    """``dataset`` prepared as it was in the run whose record is ``path``."""
    path = Path(path)
    if not path.is_file():  # a run from before dataset.json: fit again on the same split
        return dataset.prepare(train)
    saved = read_json(path)
    ready = dataset.prepare(train, state=saved.get("prepared"))
    for key in ("class_names", "feature_names"):
        if list(getattr(ready, key)) != saved[key]:
            raise CheckpointError(
                f"{path}: the data changed since the run ({key.replace('_', ' ')} differ)"
            )
    return ready
