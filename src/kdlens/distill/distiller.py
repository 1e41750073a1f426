"""Distillers own the (frozen) teacher and the student and turn a batch into a dict of losses.

The training loop only sums what ``forward`` returns and never knows which method it runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.schedules import schedule_value
from kdlens.errors import KdlensError
from kdlens.models.logits_teacher import LogitsTeacher
from kdlens.registry import Registry

DISTILLERS: Registry[nn.Module] = Registry("distillation method")
register_distiller = DISTILLERS.register


def list_distillers(pattern: str = "*") -> list[str]:
    return DISTILLERS.names(pattern)


def create_distiller(method: str, student: nn.Module, teacher: nn.Module, **kwargs) -> Distiller:
    return DISTILLERS.get(method)(student=student, teacher=teacher, **kwargs)


class Distiller(nn.Module):
    """Base: trains ``student`` alone on hard labels (a model trained "from scratch").

    ``forward(batch)`` returns ``{"loss": total, "logits": student logits, **parts}``; every part
    except ``logits`` is a scalar that already carries its weight.
    """

    # Whether ``forward`` trains a student that brings its own loss (``loss_parts``, e.g. the soft
    # tree) through that loss; a method that cannot is refused by ``build_distiller``.
    honours_own_loss = True

    def __init__(self, student: nn.Module):
        super().__init__()
        self.student = student
        self.epoch, self.total_epochs = 0, 1
        self._schedules: dict[str, tuple[str, float, float | None]] = {}

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the optimizer updates: the student, plus any adapter a subclass adds."""
        return [p for p in self.student.parameters() if p.requires_grad]

    def set_schedule(self, attribute: str, kind: str, end: float | None) -> None:
        """Move the float ``attribute`` (e.g. ``alpha``) from its current value to ``end``."""
        self._schedules[attribute] = (kind, float(getattr(self, attribute)), end)

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Called by the training loop before each epoch (``epoch`` counts from 0).

        Methods with warm-ups or scheduled weights read it; the loop stays method-agnostic.
        """
        self.epoch, self.total_epochs = epoch, total_epochs
        progress = epoch / max(total_epochs - 1, 1)
        for attribute, (kind, start, end) in self._schedules.items():
            setattr(self, attribute, schedule_value(kind, start, end, progress))

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        if has_own_loss(self.student):
            return own_loss(self.student, batch.x, {"ce": (batch.labels, 1.0, 1.0)})
        logits = self.student(batch.x)
        ce = F.cross_entropy(logits, batch.labels)
        return {"loss": ce, "ce": ce.detach(), "logits": logits}


def has_own_loss(student: nn.Module) -> bool:
    """A student whose loss is not a function of its logits alone defines ``loss_parts``.

    ``student.loss_parts(x, {name: (target, temperature, weight)})`` gets each target as (B,)
    class indices or (B, K) class distributions, and returns one weighted scalar per target, any
    terms of its own (e.g. a penalty) and ``logits``. The distillers build the targets and
    weights; the student decides how a temperature applies to it (e.g. the soft decision tree).
    """
    return callable(getattr(student, "loss_parts", None))


def own_loss(student: nn.Module, x: torch.Tensor, targets) -> dict[str, torch.Tensor]:
    """The Distiller contract's dict from a student's ``loss_parts``."""
    parts = student.loss_parts(x, targets)
    logits = parts.pop("logits")
    detached = {k: v.detach() for k, v in parts.items()}
    return {"loss": sum(parts.values()), **detached, "logits": logits}


class TeacherDistiller(Distiller):
    """A distiller with a frozen teacher: eval mode always, no gradients, parameters untouched."""

    honours_own_loss = False
    # Whether precomputed teacher logits can stand in for running the teacher (not when a method
    # needs the teacher's features every step).
    accepts_cache = True
    # Whether the method has a soft term on logits that logit standardisation (Sun et al. 2024,
    # ``distill.options.logit_standardization``) applies to; build_distiller refuses the others.
    supports_logit_standardization = False

    def __init__(self, student: nn.Module, teacher: nn.Module):
        super().__init__(student)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self._cache: torch.Tensor | None = None
        # Set by build_distiller from distill.options.logit_standardization; the method passes it
        # to its pure loss (``standardize=``), which z-scores the logits of its soft term only.
        self.logit_standardization = False

    def train(self, mode: bool = True) -> TeacherDistiller:
        super().train(mode)
        self.teacher.eval()  # batch-norm statistics and dropout of the teacher never change
        return self

    def set_teacher_cache(self, logits: torch.Tensor | None) -> None:
        """Precomputed teacher logits for the training split, looked up by ``batch.index``.

        Only valid when the student's input is not augmented: then the teacher would see the same
        input every epoch, and computing its logits once gives the same loss for less work.
        """
        self._cache = logits

    @torch.no_grad()
    def teacher_logits(self, batch: Batch) -> torch.Tensor:
        if self._cache is not None:
            return self._cache[batch.index].to(batch.x.device)
        return predict(self.teacher, batch)


def predict(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``model``'s logits for ``batch``: a teacher known only by its saved outputs
    (:class:`LogitsTeacher`) looks up the batch's dataset rows, any other model runs on ``batch.x``."""
    if isinstance(model, LogitsTeacher):
        if batch.source_index is None:
            raise KdlensError(
                f"the teacher logits:{model.source} has rows only for its own dataset's examples, "
                "and this batch comes from elsewhere"
            )
        return model.rows(batch.source_index)
    return model(batch.x)


def loss_dict(parts: dict[str, torch.Tensor], logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"loss": sum of parts, **detached parts, "logits": logits}``: the Distiller contract."""
    return {
        "loss": sum(parts.values()),
        **{k: v.detach() for k, v in parts.items()},
        "logits": logits,
    }


@torch.no_grad()
def compute_logits(model: nn.Module, loader) -> torch.Tensor:
    """Logits of ``model`` (in eval mode) over every batch of ``loader``, in order, on the CPU."""
    was_training = model.training
    model.eval()
    # Filled in place rather than concatenated: keeping every batch's small logits alive between
    # the batches' large temporaries fragments glibc's heap, which then holds on to about one
    # input batch per step (+90 MB over 35,000 rows of 1x32x32: more than the data it streams).
    out: torch.Tensor | None = None
    n = 0
    for batch in loader:
        logits = predict(model, batch).float().cpu()
        if out is None:
            rows = len(loader.y) if hasattr(loader, "y") else len(logits)
            out = torch.empty((max(rows, len(logits)), *logits.shape[1:]))
        if n + len(logits) > len(out):  # more rows than the loader said: grow
            out = torch.cat([out[:n], torch.empty((len(logits), *logits.shape[1:]))])
        out[n : n + len(logits)] = logits
        n += len(logits)
    model.train(was_training)
    if out is None:
        raise ValueError("compute_logits: the loader gave no batch")
    return out if n == len(out) else out[:n].clone()
