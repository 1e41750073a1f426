"""Stage 2: the student twice, with the same architecture, initialisation and batch order: once on
hard labels (``scratch``) and once distilled from the teacher (``kd``)."""

from __future__ import annotations

from kdlens.distill import Distiller, build_distiller
from kdlens.run import ModelRecord, RunContext
from kdlens.run.records import family_of
from kdlens.train import train_stage
from kdlens.utils import set_seed

NAME = "students"
MAIN_ONLY = False
DEPENDS_ON = ("seed", "data", "teacher", "student", "distill")
DISTILLED = "kd"  # the model name a search follows epoch by epoch
TWIN = "scratch"


def run(ctx: RunContext) -> None:
    spec = ctx.config.student
    cfg, seed = spec.train, ctx.config.seed + 1
    architecture = {"model": spec.model, "model_args": dict(spec.model_args)}
    family = family_of(architecture)

    if ctx.twins:
        set_seed(seed)
        scratch = ModelRecord(
            TWIN, role="student", family=family, trained_with="labels", spec=architecture
        )
        train_stage(
            ctx, scratch, Distiller(ctx.build(spec)), cfg, seed, ctx.student_data, DEPENDS_ON
        )

    set_seed(seed)  # the same initialisation and batch order with or without the twin
    distiller = build_distiller(
        ctx.config.distill, ctx.build(spec), ctx.models["teacher"], ctx.dataset.input_shape
    )
    kd = ModelRecord(
        DISTILLED,
        role="student",
        family=family,
        trained_with="teacher",
        twin=TWIN if ctx.twins else None,
        spec=architecture,
    )
    train_stage(ctx, kd, distiller, cfg, seed, ctx.student_data, DEPENDS_ON)
