"""``logits:<file>``: a teacher known only by its outputs (a model behind an API, or too large).

The file holds an (N, K) array, one row per example of the dataset *in the dataset's order*
(row i belongs to ``dataset.x[i]``, before any split), of logits or of probabilities (rows
non-negative and summing to 1, turned into log-probabilities: the same softmax). Such a teacher
cannot be called on inputs, so it is looked up by dataset index: ``teacher.rows(index)``. The
training loop must therefore know each batch's dataset indices, and the student's input must not
be augmented (the saved rows are the teacher's answer to the un-augmented example).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from kdlens.errors import CheckpointError, KdlensError, first_line

PROBABILITY_TOLERANCE = 1e-3  # float16 softmax rows sum to 1 within this


class LogitsTeacher(nn.Module):
    """Saved (N, K) logits; ``rows(dataset_index)`` -> (B, K). No parameters, no gradient."""

    def __init__(self, logits: torch.Tensor, source: str = "", from_probabilities: bool = False):
        super().__init__()
        # A buffer moves with .to(device); not persistent: the file is the teacher's checkpoint.
        self.register_buffer("logits", logits.float(), persistent=False)  # (N, K)
        self.source = source
        self.from_probabilities = from_probabilities

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def rows(self, index: torch.Tensor | np.ndarray | list[int]) -> torch.Tensor:
        """(B,) dataset indices -> (B, K) logits, on the device the teacher is on."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.logits.device)
        return self.logits[index]

    def check_rows(self, num_examples: int) -> None:
        if len(self) != num_examples:
            raise CheckpointError(
                f"logits file {self.source} has {len(self)} rows but the dataset has "
                f"{num_examples} examples (one row per example, in the dataset's order)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise KdlensError(
            f"the teacher logits:{self.source} is known only by its saved outputs and cannot be "
            "run on inputs; look its rows up by dataset index (teacher.rows)"
        )


def load_logits(path: str | Path) -> tuple[torch.Tensor, bool]:
    """(N, K) float32 logits from a .npy or .safetensors file, and whether it held probabilities."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"logits file {p} not found")
    if p.suffix == ".npy":
        try:
            array = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise CheckpointError(
                f"logits file {p} is not a numeric .npy array ({first_line(e)})"
            ) from None
    elif p.suffix == ".safetensors":
        array = _from_safetensors(p)
    else:
        raise CheckpointError(f"logits file {p} must be a .npy or .safetensors file")
    if array.ndim != 2 or array.shape[1] < 2 or not np.issubdtype(array.dtype, np.number):
        raise CheckpointError(
            f"logits file {p} must hold numbers of shape (examples, classes); it has "
            f"{array.dtype} {array.shape}"
        )
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        bad = int(np.flatnonzero(~np.isfinite(array).all(1))[0])
        raise CheckpointError(f"logits file {p} has a NaN or infinite value (row {bad})")
    probabilities = is_probabilities(array)
    if probabilities:
        array = np.log(np.maximum(array, 1e-12))
    return torch.as_tensor(array, dtype=torch.float32), probabilities


def is_probabilities(array: np.ndarray) -> bool:
    """Rows non-negative and summing to 1: a softmax's output, not logits."""
    return bool((array >= 0).all() and np.allclose(array.sum(1), 1.0, atol=PROBABILITY_TOLERANCE))


def _from_safetensors(path: Path) -> np.ndarray:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"logits file {path} is corrupt or truncated ({first_line(e)})"
        ) from None
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    if "logits" in tensors:
        return tensors["logits"]
    raise CheckpointError(
        f"logits file {path} holds several tensors ({', '.join(sorted(tensors)[:5])}); "
        "name the one to use 'logits'"
    )


def logits_model(
    target: str, input_shape: tuple[int, ...], num_classes: int, num_examples: int | None = None
) -> LogitsTeacher:
    """The saved outputs in file ``target``; ``num_examples`` (the dataset's size, passed by the
    run) checks there is one row per example."""
    logits, probabilities = load_logits(target)
    teacher = LogitsTeacher(logits, target, probabilities)
    if teacher.num_classes != num_classes:
        raise CheckpointError(
            f"logits file {target} has {teacher.num_classes} columns (classes) but the data has "
            f"{num_classes} classes"
        )
    if num_examples is not None:
        teacher.check_rows(num_examples)
    return teacher
