"""Stage 1: the teacher, trained on the training split (less any held-out transfer share), or
loaded as it came (``teacher.checkpoint``, ``sklearn:``, ``logits:``, an ``hf:`` classifier)."""

from __future__ import annotations

import logging

from kdlens.distill import Distiller
from kdlens.run import ModelRecord, RunContext
from kdlens.run.build import architecture as architecture_of
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
    if "teacher" in ctx.models:  # loaded, and scored on the validation split, by prepare()
        teacher = ctx.models["teacher"]
        architecture = architecture_of(spec, teacher)
        record = ModelRecord(
            "teacher",
            role="teacher",
            family=family_of(architecture),
            spec=architecture,
            source="loaded",
        )
        if teacher.state_dict():  # saved logits and estimators have no torch weights to save
            record.weights = ctx.folder.relative(ctx.folder.weights("teacher"))
            record.format = "safetensors"
            if ctx.folder.write:
                save_weights(teacher, ctx.folder.weights("teacher"))
        ctx.add_model(record, teacher)
        found = ctx.loaded_teacher or {}
        log.info(
            "teacher: loaded %s%s; validation accuracy %.4f (preprocess: %s)",
            spec.model,
            f" from {spec.checkpoint}" if spec.checkpoint else "",
            found.get("loaded_val_accuracy", float("nan")),
            describe_preprocess(found.get("preprocess")),
        )
        return
    set_seed(ctx.config.seed)
    model = ctx.build(spec)
    architecture = architecture_of(spec, model)
    record = ModelRecord(
        "teacher", role="teacher", family=family_of(architecture), spec=architecture
    )
    train_stage(
        ctx,
        record,
        Distiller(model),
        spec.train,
        ctx.config.seed,
        ctx.teacher_data,
        DEPENDS_ON,
        source_index=ctx.teacher_index,
    )


def describe_preprocess(resolved) -> str:
    """``normalize imagenet, resize 224x224`` for the log line."""
    if resolved is None:
        return "none: saved outputs"
    text = f"normalize {resolved.get('normalize')}"
    if resolved.get("tokenizer"):
        text = f"token ids of {resolved['tokenizer']}'s tokenizer"
    if resolved.get("resize"):
        text += f", resize {resolved['resize'][0]}x{resolved['resize'][1]}"
    return text
