"""Stage 2: the student twice, with the same architecture, initialisation and batch order: once on
hard labels (``scratch``) and once distilled from the teacher (``kd``)."""

from __future__ import annotations

from kdlens.distill import Distiller, build_distiller
from kdlens.run import ModelRecord, RunContext
from kdlens.run.build import architecture as architecture_of
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
    data, index = ctx.student_data, ctx.student_index

    set_seed(seed)
    model = ctx.build(spec)
    architecture = architecture_of(spec, model)
    family = family_of(architecture)
    if ctx.twins:
        scratch = ModelRecord(
            TWIN, role="student", family=family, trained_with="labels", spec=architecture
        )
        train_stage(ctx, scratch, Distiller(model), cfg, seed, data, DEPENDS_ON, source_index=index)

    set_seed(seed)  # the same initialisation and batch order with or without the twin
    distiller = build_distiller(
        ctx.config.distill,
        ctx.build(spec),
        ctx.models["teacher"],
        ctx.dataset.input_shape,
        num_examples=len(ctx.student_data[1]),
    )
    kd = ModelRecord(
        DISTILLED,
        role="student",
        family=family,
        trained_with="teacher",
        twin=TWIN if ctx.twins else None,
        spec=architecture,
    )
    train_stage(ctx, kd, distiller, cfg, seed, data, DEPENDS_ON, source_index=index)
