"""Your own images: ``data.name: imagefolder:PATH``, torchvision's ``ImageFolder`` layout.

``PATH/<class>/<image>`` gives one class per subfolder (sorted names, as ``ImageFolder``). When
``PATH`` holds ``train/`` (and ``val/`` or ``validation/``, ``test/``), each is such a folder and
they are the split; a part that is missing is carved from ``train/``. Images are decoded with
PIL to float pixels in [0, 1]: ``data.image_size: [H, W]`` resizes (default: the first image's
size) and ``data.channels: 1 | 3`` converts (default: the first image's, grey 1, colour 3).
Images that would take more than ``data.max_memory_gb`` decoded stay on disk and are decoded when
a batch reads them (:func:`read_images`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import TEST, TRAIN, VAL, Dataset
from kdlens.data.lazy import LazyRows, should_stream
from kdlens.data.registry import register_source
from kdlens.errors import DataError

SPLIT_FOLDERS = {"train": TRAIN, "val": VAL, "validation": VAL, "test": TEST}
GREY_MODES = ("1", "L", "LA", "I", "F")  # and "I;16" and its byte orders

# What a file that is not a decodable image raises inside PIL.
_BAD_IMAGE = (OSError, ValueError, SyntaxError, EOFError)


@register_source(
    "imagefolder",
    help="<folder> Your images, one subfolder per class (as torchvision's ImageFolder).",
)
def load_image_folder(
    path: str,
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    skip_bad_files: bool = False,
    max_memory_gb: float | None = None,
) -> Dataset:
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    parts = {p.name: p for p in _subfolders(root) if p.name in SPLIT_FOLDERS}
    if "train" in parts:
        files, classes, fixed = _split_files(root, parts)
    else:
        classes = [p.name for p in _subfolders(root)]
        files, fixed = _class_files(root, classes), None
    names = [str(Path(path) / Path(f).relative_to(root)) for f, _ in files]
    x, kept, skipped = read_images(
        ImageFiles(names, [f for f, _ in files]),
        image_size,
        channels,
        skip_bad_files,
        max_memory_gb,
    )
    keep = torch.as_tensor(kept, dtype=torch.long)
    y = torch.as_tensor([label for _, label in files], dtype=torch.long)[keep]
    return Dataset(
        name=f"imagefolder:{path}",
        x=x,
        y=y,
        kind="image",
        class_names=classes,
        fixed_split=None if fixed is None else torch.as_tensor(fixed, dtype=torch.int8)[keep],
        skipped_files=skipped,
    )


def _subfolders(folder: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return sorted(
        (Path(e.path) for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")),
        key=lambda p: p.name,
    )


def _class_files(folder: Path, classes: list[str]) -> list[tuple[str, int]]:
    """(file, label) pairs under ``folder/<class>/``; an empty class folder is an error."""
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    if not classes:
        raise DataError(f"image folder {folder} has no class subfolders (one per class)")
    to_index = {c: i for i, c in enumerate(classes)}
    present = [c for c in classes if (folder / c).is_dir()]
    files = make_dataset(
        str(folder), {c: to_index[c] for c in present}, IMG_EXTENSIONS, allow_empty=True
    )
    counts = np.bincount([label for _, label in files], minlength=len(classes))
    for c in present:
        if counts[to_index[c]] == 0:
            raise DataError(
                f"class folder {folder / c} has no images ({', '.join(IMG_EXTENSIONS)})"
            )
    return files


def _split_files(root: Path, parts: dict[str, Path]):
    if "val" in parts and "validation" in parts:
        raise DataError(f"image folder {root} has both val/ and validation/: keep one")
    others = [p.name for p in _subfolders(root) if p.name not in SPLIT_FOLDERS]
    if others:
        raise DataError(
            f"image folder {root} holds train/ and also {others[0]}/: put every class folder "
            "inside train/ (and val/, test/)"
        )
    classes = [p.name for p in _subfolders(parts["train"])]
    files, fixed = [], []
    for name, folder in sorted(parts.items(), key=lambda kv: SPLIT_FOLDERS[kv[0]]):
        extra = sorted({p.name for p in _subfolders(folder)} - set(classes))
        if extra:
            raise DataError(f"class folder {folder / extra[0]} has no counterpart in {root}/train")
        part = _class_files(folder, classes)
        files += part
        fixed += [SPLIT_FOLDERS[name]] * len(part)
    return files, classes, fixed


def decode_images(
    files: Sequence[tuple[str, str | bytes]],
    image_size: Sequence[int] | None = None,
    channels: int | None = None,
    skip_bad_files: bool = False,
) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode ``(name, path or bytes)`` pairs to (N, C, H, W) float pixels in [0, 1].

    Returns the pixels, the positions of the images kept and the names of those skipped
    (unreadable, with ``skip_bad_files``). The first readable image sets the default size and
    channels.
    """
    x: torch.Tensor | None = None
    kept: list[int] = []
    skipped: list[str] = []
    for i, (name, source) in enumerate(files):
        try:
            shape = _shape(name, source, image_size, channels) if x is None else x.shape[1:]
            pixels = decode_image(name, source, shape[0], (shape[1], shape[2]))
        except DataError:
            if not skip_bad_files:
                raise
            skipped.append(name)
            continue
        if x is None:  # the first good image decides what was not configured
            x = torch.empty(len(files), *shape)  # (N, C, H, W), cut to the kept rows
        x[len(kept)] = torch.from_numpy(pixels)
        kept.append(i)
    if x is None:
        raise DataError(f"no readable images among {len(files)} files")
    return x[: len(kept)], kept, skipped


def read_images(
    rows: ImageRows,
    image_size: Sequence[int] | None,
    channels: int | None,
    skip_bad_files: bool,
    max_memory_gb: float | None,
) -> tuple[torch.Tensor | LazyRows, list[int], list[str]]:
    """The images of ``rows`` decoded as :func:`decode_images` decodes them, or, when they would
    take more than ``max_memory_gb`` decoded, :class:`LazyRows` that decode them when read.

    Streaming, every image is opened once here (its header: a file that is not an image is named
    now, before anything trains); with ``skip_bad_files`` every image is decoded once instead, so
    the unreadable ones are known and left out (the pixels are not kept).
    """
    first = _first_readable(rows, image_size, channels, skip_bad_files)
    if first is None or not should_stream(len(rows), first, max_memory_gb):
        return decode_images(rows.pairs(), image_size, channels, skip_bad_files)
    rows.row_shape = first
    kept: list[int] = []
    skipped: list[str] = []
    for i in range(len(rows)):
        try:
            if skip_bad_files:
                rows.read(np.asarray([i]))
            else:
                _shape(*rows.pair(i), None, None)  # the header only
        except DataError:
            if not skip_bad_files:
                raise
            skipped.append(rows.name(i))
            continue
        kept.append(i)
    return LazyRows(rows, np.asarray(kept, dtype=np.int64)), kept, skipped


def _first_readable(rows, image_size, channels, skip_bad_files) -> tuple[int, int, int] | None:
    """(C, H, W) as decode_images sets them: from the first image that decodes."""
    for i in range(len(rows)):
        name, source = rows.pair(i)
        try:
            shape = _shape(name, source, image_size, channels)
            decode_image(name, source, shape[0], (shape[1], shape[2]))
            return shape
        except DataError:
            if not skip_bad_files:
                raise
    return None


class ImageRows:
    """Images decoded when they are read: (C, H, W) float32 in [0, 1], as decode_images decodes
    them. A source says where row ``i`` is (``source``: a path or the bytes) and what to call it
    in errors (``name``); ``row_shape`` is set by :func:`read_images`."""

    finite = True  # pixels are clipped to [0, 1]
    row_shape: tuple[int, int, int] = (0, 0, 0)

    def __len__(self) -> int:
        raise NotImplementedError

    def name(self, row: int) -> str:
        raise NotImplementedError

    def source(self, row: int) -> str | bytes:
        raise NotImplementedError

    def pair(self, row: int) -> tuple[str, str | bytes]:
        return self.name(row), self.source(row)

    def pairs(self) -> list[tuple[str, str | bytes]]:
        """(name, source) of every row, to decode them all at once."""
        return [self.pair(i) for i in range(len(self))]

    def read(self, rows: np.ndarray) -> torch.Tensor:
        c, h, w = self.row_shape
        out = torch.empty(len(rows), c, h, w)  # (B, C, H, W)
        for j, row in enumerate(rows.tolist()):
            pixels = decode_image(*self.pair(row), c, (h, w))
            out[j] = torch.from_numpy(pixels)
        return out


class ImageFiles(ImageRows):
    """Image files on disk, by path."""

    def __init__(self, names: list[str], paths: list[str]):
        self.names, self.paths = names, paths

    def __len__(self) -> int:
        return len(self.paths)

    def name(self, row: int) -> str:
        return self.names[row]

    def source(self, row: int) -> str:
        return self.paths[row]


def _shape(name: str, source, image_size, channels) -> tuple[int, int, int]:
    """(C, H, W) an image decodes to: the configured size and channels, else its own."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            c = channels or (1 if img.mode.startswith(GREY_MODES) else 3)
            h, w = image_size or (img.height, img.width)
            return c, h, w
    except (*_BAD_IMAGE, Image.DecompressionBombError) as e:
        raise DataError(_unreadable(name, e)) from None


def decode_image(name: str, source, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One image (a path or its bytes) -> (C, H, W) float32 in [0, 1]; a DataError naming it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return _pixels(img, channels, size)
    except (*_BAD_IMAGE, Image.DecompressionBombError) as e:
        raise DataError(_unreadable(name, e)) from None


def _unreadable(name: str, e: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(e, UnidentifiedImageError):
        reason = "not an image file PIL can decode"
    else:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return (
        f"image {name} cannot be read ({reason}); data.skip_bad_files: true skips unreadable images"
    )


def _pixels(img, channels: int, size: tuple[int, int]) -> np.ndarray:
    """One PIL image -> (C, H, W) float32 in [0, 1]."""
    from PIL import Image

    if img.mode.startswith("I"):  # 16-bit grey (PNG, TIFF): 8-bit conversion would clip it
        img, scale = img.convert("F"), 1 / 65535
    elif img.mode == "F":
        scale = 1.0
    else:
        img, scale = img.convert("L" if channels == 1 else "RGB"), 1 / 255
    h, w = size
    if img.size != (w, h):
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.float32) * scale
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (H, W[, C]) -> (C, H, W)
    if arr.shape[0] != channels:  # float grey asked for colour
        arr = np.repeat(arr, channels, axis=0)
    return np.clip(arr, 0.0, 1.0)
