"""Your own data from a file: ``data.name: npz:path/to/data.npz``.

The ``.npz`` (``numpy.savez``) holds ``x``: float inputs, (N, D) tabular, (N, H, W) grey images
or (N, C, H, W) images in [0, 1]; ``y``: (N,) integer labels in [0, K); and optionally
``class_names`` (K,) and ``feature_names`` (D,) as string arrays. Object arrays are refused
(``allow_pickle=False``): loading data never runs code.

When ``x`` would take more than ``data.max_memory_gb`` as float32, it stays on disk: an ``.npz``
written by ``numpy.savez`` stores each array uncompressed, so row ``i`` of ``x`` is a fixed range
of bytes of the file, read when a batch needs it (:class:`NpyRows`). ``numpy.savez_compressed``
arrays cannot be read by row and are refused at that size.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import Dataset
from kdlens.data.lazy import GB, LazyRows, decoded_gb, should_stream
from kdlens.data.registry import register_source
from kdlens.errors import DataError

# Look for NaN and inf in this much of x at a time (less under a small data.max_memory_gb).
FINITE_CHECK_BYTES = 64 * 2**20


@register_source(
    "npz", help="<file> Your data as arrays x (N, ...) and y (N,) in a numpy .npz file."
)
def load_npz(path: str | Path, max_memory_gb: float | None = None) -> Dataset:
    p = Path(path).expanduser()
    name = f"npz:{path}"
    if not p.is_file():
        raise DataError(f"data file not found: {p}")
    if not zipfile.is_zipfile(p):
        raise DataError(f"data file {p} is not a readable .npz file (not a zip archive)")
    try:
        with np.load(p, allow_pickle=False) as f:
            lazy = _x_on_disk(p, f, max_memory_gb)
            arrays = {k: f[k] for k in f.files if not (lazy is not None and k == "x")}
    except ValueError as e:
        raise DataError(
            f"data file {p}: {str(e).splitlines()[0]} (object arrays are refused)"
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"data file {p} is not a readable .npz file ({e})") from None
    if lazy is not None:
        arrays["x"] = lazy
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
    if x.ndim == 3 and lazy is None:
        x = x[:, None]  # (N, H, W) -> (N, 1, H, W); NpyRows reads rows so
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
    if lazy is not None:
        inputs = LazyRows.of(lazy)
        _check_finite(name, inputs, min(FINITE_CHECK_BYTES, max_memory_gb * GB / 16))
    else:
        inputs = torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)
    return Dataset(
        name=name,
        x=inputs,
        y=torch.as_tensor(y, dtype=torch.long),
        kind="image" if inputs.ndim == 4 else "tabular",
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


class NpyRows:
    """Rows of an array stored uncompressed at ``offset`` of a file (a ``numpy.savez`` member),
    read with one ``pread`` per run of consecutive rows; (N, H, W) grey images read as
    (N, 1, H, W). Plain reads, not a memory map: mapped pages would count in the process's
    memory until the kernel drops them."""

    finite = False  # checked once, at load (_check_finite)

    def __init__(self, path: str, offset: int, dtype: np.dtype, shape: tuple[int, ...]):
        self.path, self.offset, self.dtype, self.shape = path, offset, np.dtype(dtype), shape
        inner = tuple(shape[1:])
        self.row_shape = (1, *inner) if len(shape) == 3 else inner
        self.row_bytes = math.prod(inner) * self.dtype.itemsize
        self._fd: int | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fd": None}  # each process opens the file itself

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def read(self, rows: np.ndarray) -> torch.Tensor:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=self.dtype)
        start = 0
        while start < len(rows):  # one read per run of consecutive rows
            stop = start + 1
            while stop < len(rows) and rows[stop] == rows[stop - 1] + 1:
                stop += 1
            size = (stop - start) * self.row_bytes
            data = _pread(self._fd, size, self.offset + int(rows[start]) * self.row_bytes)
            if len(data) != size:
                raise DataError(f"data file {self.path} is shorter than its array x says")
            out[start:stop] = np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])
            start = stop
        return torch.as_tensor(out.astype(np.float32, copy=False)).reshape(
            len(rows), *self.row_shape
        )


def _pread(fd: int, size: int, offset: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(fd, size, offset)
    os.lseek(fd, offset, os.SEEK_SET)  # Windows has no pread; one process reads a reader's rows
    return os.read(fd, size)


def _x_on_disk(p: Path, f, max_memory_gb: float | None) -> NpyRows | None:
    """A reader of ``x`` when it is too large to load, else None (load it)."""
    if "x" not in f.files or max_memory_gb is None:
        return None
    with f.zip.open("x.npy") as member:
        shape, dtype, fortran = _npy_header(member)
    if len(shape) not in (2, 3, 4) or not np.issubdtype(dtype, np.number):
        return None  # refused with the message for any x
    inner = tuple(shape[1:])
    row_shape = (1, *inner) if len(shape) == 3 else inner
    if not should_stream(shape[0], row_shape, max_memory_gb):
        return None
    size = f"x takes {decoded_gb(shape[0], row_shape):.3g} GB as float32, above data.max_memory_gb ({max_memory_gb:g})"
    info = f.zip.getinfo("x.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        raise DataError(
            f"data file {p}: {size}, and it is compressed (numpy.savez_compressed), so its rows "
            "cannot be read one at a time: save it with numpy.savez, or raise data.max_memory_gb"
        )
    if fortran and shape[0] > 1 and math.prod(inner) > 1:
        raise DataError(
            f"data file {p}: {size}, and it is stored column by column (Fortran order), so a row "
            "is not one range of bytes: save np.ascontiguousarray(x), or raise data.max_memory_gb"
        )
    with open(p, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)  # the zip member's local header: its name and extra field follow
        if local[:4] != b"PK\x03\x04":
            raise DataError(f"data file {p} is not a readable .npz file (bad zip entry for x)")
        name_len, extra_len = struct.unpack("<HH", local[26:30])
        fh.seek(info.header_offset + 30 + name_len + extra_len)
        _npy_header(fh)
        offset = fh.tell()
    return NpyRows(str(p), offset, dtype, tuple(shape))


def _npy_header(fp) -> tuple[tuple[int, ...], np.dtype, bool]:
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
    else:  # 2.0 and 3.0 differ only in how the header text is encoded
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
    return tuple(shape), np.dtype(dtype), bool(fortran)


def _check_finite(name: str, x: LazyRows, chunk_bytes: float) -> None:
    """What check_dataset does for a tensor, one slice of about ``chunk_bytes`` at a time."""
    step = max(1, int(chunk_bytes // max(1, x.nbytes // max(1, len(x)))))
    bad = 0
    for start in range(0, len(x), step):
        chunk = x[start : start + step]
        bad += int((~torch.isfinite(chunk)).flatten(1).any(1).sum())
    if bad:
        raise DataError(f"dataset {name!r}: {bad} examples contain NaN or inf")
