"""Data larger than memory: inputs read from disk when they are asked for.

A source whose decoded inputs would exceed ``data.max_memory_gb`` gives its ``Dataset`` a
:class:`LazyRows` as ``x`` instead of a tensor. Indexing it reads (decodes) the rows asked for, so
``dataset.x[:2]`` and the small val and test splits work as with a tensor; :meth:`LazyRows.select`
picks rows without reading them: that is how the training split reaches the batch loaders, which
stream it through a ``torch.utils.data.DataLoader`` (``kdlens.data.streaming``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch

GB = 1e9  # data.max_memory_gb counts decimal gigabytes


class RowReader(Protocol):
    """Reads the rows of one source. It is copied into every DataLoader worker process, so it
    holds paths and opens files itself (once per process), never an open file.

    ``finite``: the values cannot be NaN or inf (decoded pixels), so no pass checks them.
    """

    row_shape: tuple[int, ...]
    finite: bool

    def __len__(self) -> int: ...

    def read(self, rows: np.ndarray) -> torch.Tensor:
        """(len(rows), *row_shape) float32 inputs of the given rows, in that order."""
        ...


@dataclass(frozen=True)
class LazyRows:
    """(N, ...) float32 inputs that stay on disk: ``rows`` are positions in ``reader``.

    ``x[i]``, ``x[:k]``, ``x[index]`` read those rows into a tensor; ``x.select(index)`` is the
    same rows, still unread. ``workers``: DataLoader processes that read for the batch loaders
    (0: the training process reads).
    """

    reader: Any  # a RowReader
    rows: np.ndarray
    workers: int = 0

    @classmethod
    def of(cls, reader: Any, workers: int = 0) -> LazyRows:
        return cls(reader, np.arange(len(reader), dtype=np.int64), workers)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.reader.row_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self.reader.row_shape)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def nbytes(self) -> int:
        """Bytes the rows take once decoded."""
        return len(self.rows) * math.prod(self.reader.row_shape) * 4

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key) -> torch.Tensor:
        if isinstance(key, int | np.integer) or (isinstance(key, torch.Tensor) and key.ndim == 0):
            return self.reader.read(self.rows[[int(key)]])[0]
        return self.reader.read(self.rows[_positions(key)])

    def select(self, key) -> LazyRows:
        """The rows ``key`` picks (a slice, an index or a bool mask), not read."""
        return replace(self, rows=self.rows[_positions(key)])

    def with_workers(self, workers: int) -> LazyRows:
        return replace(self, workers=workers)


def _positions(key):
    if isinstance(key, slice):
        return key
    if isinstance(key, torch.Tensor):
        key = key.cpu().numpy()
    key = np.asarray(key)
    if key.dtype != bool and not np.issubdtype(key.dtype, np.integer):
        if key.size:  # an empty list is an empty index
            raise TypeError(f"rows are picked by integers or a bool mask, not {key.dtype}")
        key = key.astype(np.int64)
    return key


def is_lazy(x: Any) -> bool:
    return isinstance(x, LazyRows)


def take(x: torch.Tensor | LazyRows, index) -> torch.Tensor | LazyRows:
    """Rows ``index`` of ``x``: a tensor's are copied, lazy rows stay unread."""
    return x.select(index) if isinstance(x, LazyRows) else x[index]


def decoded_gb(n: int, row_shape: tuple[int, ...]) -> float:
    """What ``n`` rows take in memory as float32, in GB."""
    return n * math.prod(row_shape) * 4 / GB


def should_stream(n: int, row_shape: tuple[int, ...], max_memory_gb: float | None) -> bool:
    """Whether a source's decoded inputs exceed ``max_memory_gb`` (None: never stream)."""
    return max_memory_gb is not None and decoded_gb(n, row_shape) > max_memory_gb
