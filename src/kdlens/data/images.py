"""Your own images: ``data.name: imagefolder:PATH``, torchvision's ``ImageFolder`` layout.

``PATH/<class>/<image>`` gives one class per subfolder (sorted names, as ``ImageFolder``). When
``PATH`` holds ``train/`` (and ``val/`` or ``validation/``, ``test/``), each is such a folder and
they are the split; a part that is missing is carved from ``train/``. Images are decoded with
PIL to float pixels in [0, 1]: ``data.image_size: [H, W]`` resizes (default: the first image's
size) and ``data.channels: 1 | 3`` converts (default: the first image's, grey 1, colour 3).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdlens.data.base import TEST, TRAIN, VAL, Dataset
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
    x, kept, skipped = decode_images(
        [(str(Path(path) / Path(f).relative_to(root)), f) for f, _ in files],
        image_size,
        channels,
        skip_bad_files,
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
    from PIL import Image, UnidentifiedImageError

    x: torch.Tensor | None = None
    kept: list[int] = []
    skipped: list[str] = []
    for i, (name, source) in enumerate(files):
        try:
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                if x is None:  # the first good image decides what was not configured
                    c = channels or (1 if img.mode.startswith(GREY_MODES) else 3)
                    h, w = image_size or (img.height, img.width)
                    pixels = _pixels(img, c, (h, w))
                    x = torch.empty(len(files), c, h, w)  # (N, C, H, W), cut to the kept rows
                else:
                    pixels = _pixels(img, x.shape[1], (x.shape[2], x.shape[3]))
        except (*_BAD_IMAGE, Image.DecompressionBombError) as e:
            if not skip_bad_files:
                if isinstance(e, UnidentifiedImageError):
                    reason = "not an image file PIL can decode"
                else:
                    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise DataError(
                    f"image {name} cannot be read ({reason}); data.skip_bad_files: true skips "
                    "unreadable images"
                ) from None
            skipped.append(name)
            continue
        x[len(kept)] = torch.from_numpy(pixels)
        kept.append(i)
    if x is None:
        raise DataError(f"no readable images among {len(files)} files")
    return x[: len(kept)], kept, skipped


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
