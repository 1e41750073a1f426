"""A base for methods that add a term on intermediate features to KD's logit terms."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdlens.data.loader import Batch
from kdlens.distill.hooks import capture, check_module_names, last_linear_input
from kdlens.distill.methods.kd import KDDistiller


def match_spatial(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger of two (B, C, H, W) maps down to the other's size."""
    if a.ndim != 4 or a.shape[-2:] == b.shape[-2:]:
        return a, b
    if a.shape[-2] * a.shape[-1] > b.shape[-2] * b.shape[-1]:
        return F.adaptive_avg_pool2d(a, b.shape[-2:]), b
    return a, F.adaptive_avg_pool2d(b, a.shape[-2:])


class FeatureDistiller(KDDistiller):
    """KD (``alpha`` on hard-label CE, ``1 - alpha`` on the soft KL) plus a feature term.

    ``alpha = 1`` gives the published feature-only recipes (CE + weight * feature loss); lower
    values add KD, as RepDistiller's "+KD" rows do. Features come from hooks on named modules.
    """

    method = "feature"
    honours_own_loss = False  # its terms need the student's logits and features, not a loss
    accepts_cache = False  # the teacher must run every step to produce its features

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_layers: list[str],
        student_layers: list[str],
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        super().__init__(student, teacher, temperature, alpha, example_weighting)
        where = f"distill.options.{self.method}"
        check_module_names(teacher, teacher_layers, f"{where} (teacher)")
        check_module_names(student, student_layers, f"{where} (student)")
        self.teacher_layers, self.student_layers = list(teacher_layers), list(student_layers)

    def set_teacher_cache(self, logits: torch.Tensor | None) -> None:
        """Ignored: the teacher must run every step to produce its features."""

    def features(
        self, batch: Batch
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Student logits, teacher logits, student features, teacher features (layer order)."""
        with capture(self.teacher, self.teacher_layers) as t_store, torch.no_grad():
            teacher_logits = self.teacher(batch.x)
        with capture(self.student, self.student_layers) as s_store:
            logits = self.student(batch.x)
        return (
            logits,
            teacher_logits,
            [s_store[n] for n in self.student_layers],
            [t_store[n] for n in self.teacher_layers],
        )

    @torch.no_grad()
    def probe_shapes(self, input_shape: tuple[int, ...]) -> tuple[list, list]:
        """Feature shapes (without batch) from one forward of two zero inputs, in eval mode."""
        x = torch.zeros(2, *input_shape, device=next(self.student.parameters()).device)
        was = self.student.training
        self.student.eval()
        with (
            capture(self.teacher, self.teacher_layers) as t,
            capture(self.student, self.student_layers) as s,
        ):
            self.teacher(x)
            self.student(x)
        self.student.train(was)
        return (
            [tuple(s[n].shape[1:]) for n in self.student_layers],
            [tuple(t[n].shape[1:]) for n in self.teacher_layers],
        )


class EmbeddingDistiller(FeatureDistiller):
    """A feature method on one layer pair: by default the embeddings entering each model's
    classifier (RepDistiller's ``feat[-1]``), as the relational methods (RKD, PKT, CC) use."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_layer: str | None = None,
        student_layer: str | None = None,
        temperature: float = 4.0,
        alpha: float = 0.1,
        example_weighting: str = "none",
    ):
        super().__init__(
            student,
            teacher,
            [teacher_layer or last_linear_input(teacher)],
            [student_layer or last_linear_input(student)],
            temperature,
            alpha,
            example_weighting,
        )
