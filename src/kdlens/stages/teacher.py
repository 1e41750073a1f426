"""Stage 1: the teacher, trained on the training split (less any held-out transfer share), or
loaded from ``teacher.checkpoint``."""

from __future__ import annotations

import logging

from kdlens.distill import Distiller
from kdlens.run import ModelRecord, RunContext
from kdlens.run.records import family_of
from kdlens.train import train_stage
from kdlens.utils import set_seed
from kdlens.weights import save_weights

log = logging.getLogger("kdlens")

NAME = "teacher"
MAIN_ONLY = False
# What the teacher's weights depend on: a resume may not change these once it finished.
DEPENDS_ON = ("seed", "data", "teacher", "distill.transfer.holdout")


def run(ctx: RunContext) -> None:
    spec = ctx.config.teacher
    architecture = {"model": spec.model, "model_args": dict(spec.model_args)}
    record = ModelRecord(
        "teacher", role="teacher", family=family_of(architecture), spec=architecture
    )
    if "teacher" in ctx.models:  # loaded from a checkpoint by prepare()
        record.source = "loaded"
        record.weights = ctx.folder.relative(ctx.folder.weights("teacher"))
        record.format = "safetensors"
        if ctx.folder.write:
            save_weights(ctx.models["teacher"], ctx.folder.weights("teacher"))
        ctx.add_model(record, ctx.models["teacher"])
        log.info("teacher: loaded from %s", spec.checkpoint)
        return
    set_seed(ctx.config.seed)
    train_stage(
        ctx,
        record,
        Distiller(ctx.build(spec)),
        spec.train,
        ctx.config.seed,
        ctx.teacher_data,
        DEPENDS_ON,
    )
