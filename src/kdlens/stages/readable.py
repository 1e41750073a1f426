"""Stage 4: students a person can read.

For each readable student in ``config.readable.students`` it trains or fits a distilled version
(``<name>_kd``) and a hard-label twin (``<name>_scratch``), evaluates both like every other model
(plus the most-probable-path prediction of soft trees), sweeps complexity for the families in
``config.readable.sweeps``, saves what every figure needs in ``readable/readable.json``
(:mod:`kdlens.readable.describe`) and draws the figures and rules from that file alone
(:mod:`kdlens.readable.figures`; ``kdlens report`` redraws them).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch

from kdlens.config import ModelSpec, ReadableConfig
from kdlens.data import BatchLoader
from kdlens.data.lazy import GB
from kdlens.distill import Distiller, build_distiller, compute_logits
from kdlens.evaluate import classification_metrics
from kdlens.evaluate.metrics import accuracy, fidelity
from kdlens.models import count_parameters
from kdlens.models.logits_teacher import LogitsTeacher
from kdlens.readable import (
    SoftTargetClassifier,
    TransferSet,
    augmented_copies,
    complexity_curve,
    dataset_header,
    describe_logistic,
    describe_soft_tree,
    describe_tree,
    ebm_available,
    features_for,
    fit_pair,
    parameter_label,
    surrogate_fits,
    teacher_probabilities,
)
from kdlens.readable.figures import save_readable_figures
from kdlens.run import ModelRecord, RunContext
from kdlens.run.context import EVAL_BATCH
from kdlens.train import train_stage
from kdlens.utils import set_seed

log = logging.getLogger("kdlens")

NAME = "readable"
MAIN_ONLY = False  # soft trees train in every process
DEPENDS_ON = ("seed", "data", "teacher", "distill", "readable")
SCHEMA_VERSION = 1  # of readable.json
# Streaming data: surrogates are fitted on a sample of at most this many training rows.
SURROGATE_ROWS = 20_000


def run(ctx: RunContext) -> None:
    """Add readable students, their hard-label twins and complexity curves to ``ctx``."""
    cfg: ReadableConfig = ctx.config.readable
    if not cfg.students and not cfg.sweeps:
        return
    if ctx.dataset.kind == "text":
        ctx.note(
            "readable: no readable students for text (trees and rules over token ids say nothing)"
        )
        return
    start = time.perf_counter()
    test = _arrays(ctx, "test")
    t_test = ctx.test_logits["teacher"]
    needs_transfer = any(k != "soft_tree" for k in [*cfg.students, *cfg.sweeps])
    transfer = build_transfer(ctx, cfg, ctx.models["teacher"]) if needs_transfer else None
    described: dict[str, dict[str, Any]] = {}
    for kind in cfg.students:
        if kind == "soft_tree":
            for name, model in train_soft_trees(ctx, cfg, cfg.soft_tree.model_args).items():
                _evaluate_soft_tree(ctx, name, t_test)
                described[name] = {
                    "soft_tree": describe_soft_tree(
                        model, test["x"][:1], test["raw"][0], int(test["y"][0]), ctx.dataset.kind
                    )
                }
            continue
        if kind == "ebm" and not ebm_available():
            log.warning("readable: skipping 'ebm' (pip install 'kdlens[interpret]')")
            continue
        kd, scratch = fit_pair(
            kind,
            transfer,
            _complexity(cfg, kind),
            cfg.surrogate_temperature,
            ctx.config.seed,
            cfg.tree_max_leaves,
        )
        for arm, est in (("kd", kd), ("scratch", scratch)):
            name = f"{kind}_{arm}"
            _evaluate_surrogate(ctx, name, est, test, t_test)
            ctx.add_model(
                ModelRecord(
                    name,
                    role="readable",
                    family=kind,
                    trained_with="teacher" if arm == "kd" else "labels",
                    twin=f"{kind}_scratch" if arm == "kd" else None,
                    source="fitted",
                )
            )
            described[name] = _describe_surrogate(ctx, est)
    extras: dict[str, Any] = {"figures": [], "rules": []}
    curves = complexity_curves(ctx, cfg, transfer, test, t_test) if cfg.sweeps else {}
    if curves:
        ctx.metrics["complexity_curves"] = curves
    if transfer is not None:
        extras["transfer"] = {"kind": cfg.transfer, "n_examples": len(transfer.raw)}
    doc = readable_document(ctx, described, curves, extras.get("transfer"))
    ctx.folder.write_json(ctx.folder.readable_results, doc)
    if cfg.figures and ctx.folder.write:
        saved = save_readable_figures(doc, ctx.folder.figure, ctx.folder.rules)
        extras.update({k: [ctx.folder.relative(p) for p in v] for k, v in saved.items()})
    ctx.metrics["readable"] = extras
    ctx.timings["readable"] = time.perf_counter() - start


def readable_document(
    ctx: RunContext,
    described: dict[str, dict[str, Any]],
    curves: dict[str, Any],
    transfer: dict[str, Any] | None,
) -> dict[str, Any]:
    """readable.json: the data's header, each model's record fields and description, the curves."""
    ds = ctx.dataset
    return {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset_header(ds.kind, ds.input_shape, ds.class_names, ds.feature_names),
        "models": {
            name: {"name": name, **ctx.records[name].summary(), **description}
            for name, description in described.items()
        },
        "curves": curves,
        "transfer": transfer,
    }


def _complexity(cfg: ReadableConfig, kind: str) -> float | None:
    if kind == "tree":
        return cfg.tree_depth
    if kind == "logistic":
        return cfg.logistic_c
    return None


def _arrays(ctx, part: str) -> dict[str, Any]:
    x, y = ctx.tensors(part)
    norm = ctx.normalizer(x)
    return {"raw": x.flatten(1).numpy(), "norm": norm.flatten(1).numpy(), "x": norm, "y": y}


def build_transfer(ctx, cfg: ReadableConfig, teacher) -> TransferSet:
    """The training split, plus (``transfer: augmented``) copies the teacher labels.

    Images get random shifts (the teacher's own augmentation, at least 1 pixel); tabular rows get
    Gaussian jitter (:func:`kdlens.readable.augmented_copies`). The copies have no true label, so
    only the distilled students see them.
    """
    x, y, index = _training_rows(ctx, cfg)
    xs, labels = [x], [y.numpy()]
    if cfg.transfer == "augmented":
        shift = max(1, ctx.config.teacher.train.augment.shift)
        copies = augmented_copies(
            x, cfg.transfer_copies, shift, ctx.normalizer, ctx.config.seed + 7
        )
        xs.append(copies)
        labels.append(np.full(len(copies), -1))
    raw = torch.cat(xs)
    norm = ctx.normalizer(raw)
    if isinstance(teacher, LogitsTeacher):  # its saved rows (augmented copies are refused)
        loader = BatchLoader(
            x, y, ctx.normalizer, EVAL_BATCH, device=ctx.device, source_index=index
        )
        logits = compute_logits(teacher, loader)
        probs = torch.softmax(logits, -1).numpy().astype(np.float64)
    else:
        probs = teacher_probabilities(teacher, norm.to(ctx.device))
    return TransferSet(
        raw=raw.flatten(1).numpy(),
        norm=norm.flatten(1).numpy(),
        labels=np.concatenate(labels),
        teacher_probs=probs,
    )


def _training_rows(ctx, cfg: ReadableConfig):
    """The training split, or for streaming data a bounded sample of it (said in a note): at most
    SURROGATE_ROWS rows, fewer when they and their copies would take more than a quarter of
    ``data.max_memory_gb``."""
    if not ctx.dataset.streaming:
        return ctx.train_sample(len(ctx.split.train))
    copies = 1 + (cfg.transfer_copies if cfg.transfer == "augmented" else 0)
    row_bytes = ctx.dataset.x.nbytes / len(ctx.dataset)
    budget = int(ctx.config.data.max_memory_gb * GB / 4 / (row_bytes * copies))
    x, y, index = ctx.train_sample(max(1, min(SURROGATE_ROWS, budget)))
    if len(y) < len(ctx.split.train):
        ctx.note(
            f"readable: the surrogates (trees, logistic, EBM) were fitted on a random sample of "
            f"{len(y):,} of the {len(ctx.split.train):,} training examples (streaming data: at "
            f"most {SURROGATE_ROWS:,}, within a quarter of data.max_memory_gb)"
        )
    return x, y, index


def train_soft_trees(
    ctx: RunContext, cfg: ReadableConfig, model_args: dict, record: bool = True, tag: str = ""
) -> dict[str, torch.nn.Module]:
    """Train ``soft_tree_scratch`` and ``soft_tree_kd`` with the same init and batch order.

    ``record`` adds them to the run (models, checkpoints, histories); sweeps only need the models
    (``tag`` names their resumable training stages).
    """
    spec = ModelSpec(model="soft_tree", model_args=model_args, train=cfg.soft_tree.train)
    architecture = {"model": spec.model, "model_args": dict(model_args)}
    seed = ctx.config.seed + 11
    set_seed(seed)
    scratch = Distiller(ctx.build(spec))
    set_seed(seed)
    distiller = build_distiller(
        _soft_tree_distill(ctx, cfg),
        ctx.build(spec),
        ctx.models["teacher"],
        ctx.dataset.input_shape,
    )
    models = {}
    for arm, d in (("scratch", scratch), ("kd", distiller)):
        name = f"soft_tree{tag}_{arm}"
        rec = ModelRecord(
            name,
            role="readable",
            family="soft_tree",
            trained_with="teacher" if arm == "kd" else "labels",
            twin=f"soft_tree{tag}_scratch" if arm == "kd" else None,
            spec=architecture,
        )
        set_seed(seed)
        train_stage(ctx, rec, d, spec.train, seed, None, DEPENDS_ON, keep=record)
        models[name] = d.student.eval()
    return models


def _soft_tree_distill(ctx: RunContext, cfg: ReadableConfig):
    """The run's distillation settings, with the readable section's temperature and alpha.

    The soft tree brings its own loss, which only ``kd`` honours: another method falls back to
    ``kd`` here, and the run says so.
    """
    d = ctx.config.distill
    update: dict[str, Any] = {
        "temperature": cfg.temperature or d.temperature,
        "alpha": d.alpha if cfg.alpha is None else cfg.alpha,
    }
    if d.method != "kd":
        ctx.note(
            f"readable: soft trees are distilled with 'kd', not {d.method!r} (a soft tree brings "
            "its own loss, which only 'kd' honours)"
        )
        update["method"] = "kd"
    return d.model_copy(update=update)


def _evaluate_soft_tree(ctx, name: str, t_test: torch.Tensor) -> None:
    """Both predictions: the mixture (the model's logits) and the most probable path."""
    model = ctx.models[name]
    loader = ctx.eval_loader("test")
    logits = compute_logits(model, loader)
    ctx.test_logits[name] = logits
    path = torch.cat([model.path_predict(b.x).cpu() for b in loader])
    m = classification_metrics(logits, loader.y, t_test)
    m.update(
        path_accuracy=accuracy(path, loader.y),
        path_fidelity=fidelity(path, t_test),
        params=count_parameters(model),
        train_seconds=ctx.train_results[name].seconds,
        best_epoch=ctx.train_results[name].best_epoch,
        depth=model.depth,
        leaves=model.num_leaves,
    )
    ctx.metrics["models"][name] = m


def _surrogate_logits(ctx, est: SoftTargetClassifier, test: dict[str, Any]) -> torch.Tensor:
    x = features_for(est, test["raw"], test["norm"])
    return torch.as_tensor(est.logits(x, ctx.dataset.num_classes), dtype=torch.float32)


def _evaluate_surrogate(
    ctx, name: str, est: SoftTargetClassifier, test: dict[str, Any], t_test: torch.Tensor
) -> None:
    logits = _surrogate_logits(ctx, est, test)
    m = classification_metrics(logits, test["y"], t_test)
    m.update(est.complexity())
    m["params"] = est.n_parameters()
    m["train_seconds"] = est.fit_seconds_
    m["best_epoch"] = 0
    m["family"] = est.kind
    ctx.metrics["models"][name] = m
    ctx.test_logits[name] = logits


def _describe_surrogate(ctx, est: SoftTargetClassifier) -> dict[str, Any]:
    """What the surrogate's figures need (none yet for an EBM)."""
    ds = ctx.dataset
    if est.kind == "tree":
        return {"tree": describe_tree(est, ds.num_classes)}
    if est.kind == "logistic":
        return {"logistic": describe_logistic(est, ds.kind, ds.input_shape)}
    return {}


def complexity_curves(
    ctx, cfg: ReadableConfig, transfer: TransferSet, test: dict[str, Any], t_test: torch.Tensor
) -> dict[str, Any]:
    """Per family: complexity values and, for "kd" and "scratch", accuracy and fidelity at each."""
    curves: dict[str, Any] = {}
    for family in cfg.sweeps:
        if family == "soft_tree":
            fit_at, values, label = _soft_tree_fits(ctx, cfg), cfg.sweep_soft_tree_depths, "depth"
        else:
            values = cfg.sweep_tree_depths if family == "tree" else cfg.sweep_logistic_c
            label = parameter_label(family)
            fit_at = surrogate_fits(
                family,
                transfer,
                test["raw"],
                test["norm"],
                ctx.dataset.num_classes,
                cfg.surrogate_temperature,
                ctx.config.seed,
            )
        curves[family] = complexity_curve(label, values, fit_at, test["y"], t_test)
    return curves


def _soft_tree_fits(ctx, cfg: ReadableConfig):
    """``fit_at(depth)``: both soft trees of that depth, trained (resumably) but not kept."""

    def fit_at(depth: float) -> dict[str, tuple[torch.Tensor, float]]:
        depth = int(depth)
        tag = f"_sweep_depth{depth}"
        args = {**cfg.soft_tree.model_args, "depth": depth}
        trees = train_soft_trees(ctx, cfg, args, record=False, tag=tag)
        return {
            arm: (compute_logits(trees[f"soft_tree{tag}_{arm}"], ctx.eval_loader("test")), 2**depth)
            for arm in ("kd", "scratch")
        }

    return fit_at
