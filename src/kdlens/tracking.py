"""TensorBoard logging of training: one event-file run per model, written from ``fit``'s callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kdlens.errors import KdlensError


def _group(key: str) -> str:
    """TensorBoard tag for a history key: losses, accuracies and the learning rate apart."""
    if "accuracy" in key:
        return f"accuracy/{key}"
    if key == "lr":
        return "lr"
    return f"loss/{key}"


class TensorBoardLogger:
    """Call as ``logger(model_name, epoch_record)``; writes RUN_DIR/tb/<model_name>/events.*."""

    def __init__(self, folder: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise KdlensError(
                f"--tensorboard needs the 'tensorboard' package ({e}); pip install tensorboard"
            ) from None
        self._writer_cls = SummaryWriter
        self.folder = Path(folder)
        self.writers: dict[str, Any] = {}

    def __call__(self, name: str, record: dict[str, float]) -> None:
        if name not in self.writers:
            self.writers[name] = self._writer_cls(log_dir=str(self.folder / name))
        writer, epoch = self.writers[name], int(record["epoch"])
        for key, value in record.items():
            if key != "epoch":
                writer.add_scalar(_group(key), float(value), epoch)
        writer.flush()  # an interrupted run still leaves its curves so far

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
