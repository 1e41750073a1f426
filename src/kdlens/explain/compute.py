"""Compute every explanation into one JSON-ready dict (``explain.json``); drawing comes later."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import torch

from kdlens.errors import KdlensError
from kdlens.explain import attributions as attr
from kdlens.explain import disagreements as dis
from kdlens.explain import faithfulness as faith
from kdlens.explain import soft_targets as st
from kdlens.explain.inputs import ExplainInputs

log = logging.getLogger("kdlens")

AGREEMENT_METHOD = "integrated_gradients"
SCHEMA_VERSION = 1


def run_header(inp: ExplainInputs) -> dict[str, Any]:
    """What explain.json says about the data and the run, before any explanation."""
    return {
        "dataset": {
            "kind": inp.kind,
            "class_names": inp.class_names,
            "feature_names": inp.feature_names,
            "input_shape": list(inp.x.shape[1:]),
            "n_test": len(inp.y),
        },
        "temperature": inp.temperature,
        "config": inp.config.model_dump(),
    }


def compute_explanations(inp: ExplainInputs) -> dict[str, Any]:
    """Dark knowledge, attributions, faithfulness and disagreements for every model in ``inp``."""
    if "teacher" not in inp.test_logits:
        raise KdlensError("explanations need the teacher's predictions, but the run has none")
    timings: dict[str, float] = {}
    start = time.perf_counter()
    order = torch.randperm(len(inp.y), generator=torch.Generator().manual_seed(inp.seed))
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        **run_header(inp),
        "models": list(inp.test_logits),
        "torch_models": list(inp.models),
    }
    out["dark_knowledge"] = dark_knowledge(inp, order[: inp.config.n_show])
    timings["dark_knowledge"] = time.perf_counter() - start

    start = time.perf_counter()
    out["attributions"], out["faithfulness"], part_times = attributions_and_faithfulness(
        inp, order[: min(inp.config.n_examples, len(inp.y))]
    )
    timings.update(part_times)
    timings["attributions_total"] = time.perf_counter() - start

    start = time.perf_counter()
    out["disagreements"] = disagreements(inp)
    timings["disagreements"] = time.perf_counter() - start
    out["timings"] = timings
    return clean(out)


def students(inp: ExplainInputs) -> list[str]:
    return [n for n in inp.test_logits if n != "teacher"]


def _input_list(x: torch.Tensor) -> list:
    return np.round(x.numpy(), 4).tolist()


def _example_input(inp: ExplainInputs, i: int) -> list | str:
    """What the report draws for test example ``i``: its values, or its text."""
    if inp.kind == "text" and inp.texts is not None:
        return inp.texts[i]
    return _input_list(inp.x[i])


def _probs(inp: ExplainInputs, i: int) -> dict[str, list[float]]:
    # Significant digits, not decimals: wrong-class probabilities of 1e-7 are the point.
    return {
        n: [float(f"{p:.4g}") for p in lg[i].double().softmax(-1).tolist()]
        for n, lg in inp.test_logits.items()
    }


def dark_knowledge(inp: ExplainInputs, show: torch.Tensor) -> dict[str, Any]:
    k, t = len(inp.class_names), inp.temperature
    temps = {"1": 1.0, "distill": t}
    matrices = {
        key: {n: st.similarity_matrix(lg, inp.y, k, temp) for n, lg in inp.test_logits.items()}
        for key, temp in temps.items()
    }
    order, linkage = st.cluster_classes(matrices["1"]["teacher"])
    teacher = inp.test_logits["teacher"]
    t_range = list(range(1, inp.config.max_temperature + 1))
    return {
        "temperatures": temps,
        "matrices": {key: {n: m.tolist() for n, m in ms.items()} for key, ms in matrices.items()},
        "order": order,
        "linkage": linkage,
        "distance_definition": "mean Jensen-Shannon distance (base 2) between the teacher's and "
        "the model's wrong-class probabilities per true class, renormalised to sum to 1, at T=1",
        "distance": {
            n: {
                key: st.dark_knowledge_distance(ms["teacher"], ms[n])
                for key, ms in matrices.items()
            }
            for n in students(inp)
        },
        "entropy": {
            "temperatures": t_range,
            "teacher": st.entropy_vs_temperature(teacher, t_range),
            "max": st.max_entropy(k),
        },
        "examples": [
            {
                "index": int(i),
                "label": int(inp.y[i]),
                "input": _example_input(inp, int(i)),
                "probs": _probs(inp, int(i)),
            }
            for i in show.tolist()
        ],
    }


def _display_map(a: torch.Tensor, kind: str, method: str) -> list:
    """One map per example for drawing: images collapse channels, tabular stays per feature."""
    if kind == "image":
        a = a.abs().amax(0) if method == "saliency" else a.sum(0)  # (H, W)
    return np.round(a.numpy(), 6).tolist()


def attributions_and_faithfulness(
    inp: ExplainInputs, sel: torch.Tensor
) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    """IG for the teacher's predicted class (agreement), for each model's own class (faithfulness)."""
    cfg = inp.config
    x = inp.normalizer(inp.x[sel])  # (n, ...) what the models see
    y = inp.y[sel]
    target = inp.test_logits["teacher"][sel].argmax(-1)
    base = inp.baseline()
    n_show = min(cfg.n_show, len(sel))
    ig: dict[str, torch.Tensor] = {}
    maps: dict[str, dict[str, list]] = {}
    faithfulness: dict[str, Any] = {}
    skipped: dict[str, str] = dict(inp.skipped)
    times: dict[str, float] = {}
    for name, model in inp.models.items():
        start = time.perf_counter()
        try:
            ig[name] = attr.attribute(model, AGREEMENT_METHOD, x, target, base, cfg.ig_steps)
            shown = {AGREEMENT_METHOD: ig[name][:n_show]}
            for method in ("saliency", "grad_cam"):
                a = attr.attribute(model, method, x[:n_show], target[:n_show], base)
                if a is not None:
                    shown[method] = a
            maps[name] = {
                m: [_display_map(a[i], inp.kind, m) for i in range(n_show)]
                for m, a in shown.items()
            }
            times[f"attributions_{name}"] = time.perf_counter() - start
            start = time.perf_counter()
            faithfulness[name] = _faithfulness(inp, name, x, y, target, ig[name], base)
            times[f"faithfulness_{name}"] = time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 - a model Captum cannot differentiate (e.g. int8)
            log.warning("report: no attributions for %r (%s)", name, e)
            skipped[name] = f"{type(e).__name__}: {e}"
            ig.pop(name, None)
    agreement, input_agreement = {}, None
    if "teacher" in ig:
        agreement = {
            n: attr.agreement(ig["teacher"], a, cfg.topk) for n, a in ig.items() if n != "teacher"
        }
        # IG is (x - baseline) x mean gradient, so every model's map starts from the input: how
        # far the input alone agrees with the teacher is the level a student must beat.
        input_agreement = attr.agreement(ig["teacher"], x - base, cfg.topk)
    attributions = {
        "agreement_method": AGREEMENT_METHOD,
        "n_examples": len(sel),
        "topk": cfg.topk,
        "chance_topk_overlap": cfg.topk,
        "input_agreement": input_agreement,
        "agreement": agreement,
        "skipped": skipped,
        "examples": [
            {
                "index": int(sel[i]),
                "label": int(y[i]),
                "target": int(target[i]),
                "input": _example_input(inp, int(sel[i])),
            }
            for i in range(n_show)
        ],
        "maps": maps,
    }
    return attributions, faithfulness, times


def _faithfulness(inp, name, x, y, teacher_target, ig_teacher_target, base) -> dict[str, Any]:
    """Deletion curve and infidelity of the model's IG for its *own* predicted class."""
    cfg, model = inp.config, inp.models[name]
    with torch.no_grad():
        own = model(x.to(next(model.parameters()).device)).argmax(-1).cpu()
    ig_own = ig_teacher_target.clone()
    differ = own != teacher_target
    if differ.any():
        ig_own[differ] = attr.attribute(
            model, AGREEMENT_METHOD, x[differ], own[differ], base, cfg.ig_steps
        )
    fractions, acc = faith.deletion_curve(model, x, y, ig_own, base, cfg.deletion_steps)
    _, acc_random = faith.deletion_curve(
        model, x, y, ig_own, base, cfg.deletion_steps, "random", inp.seed
    )
    infidelity = faith.infidelity(
        model, x, own, ig_own, cfg.infidelity_samples, cfg.infidelity_noise, inp.seed
    )
    change = faith.output_change(
        model, x, own, cfg.infidelity_samples, cfg.infidelity_noise, inp.seed
    )
    positive, kept = faith.kept_without_positive(model, x, ig_own, base)
    return {
        "fractions": fractions,
        "accuracy": acc,
        "accuracy_random": acc_random,
        "deletion_auc": faith.area_under(fractions, acc),
        "deletion_auc_random": faith.area_under(fractions, acc_random),
        "positive_share": positive,
        "kept_without_positive": kept,
        "infidelity": infidelity,
        "output_change": change,
        "relative_infidelity": infidelity / change if change > 0 else None,
    }


def disagreements(inp: ExplainInputs) -> dict[str, Any]:
    k = len(inp.class_names)
    teacher = inp.test_logits["teacher"]
    out: dict[str, Any] = {
        "confusion": {n: dis.confusion_matrix(lg, inp.y, k) for n, lg in inp.test_logits.items()},
        "counts": {},
        "pair": None,
        "examples": [],
    }
    for n in students(inp):
        out["counts"][n] = dis.disagreement_indices(teacher, inp.test_logits[n], 0)[0]
    kd = inp.distilled
    if kd is not None and kd in inp.test_logits:
        _, shown = dis.disagreement_indices(
            teacher, inp.test_logits[kd], inp.config.max_disagreements
        )
        out["pair"] = ["teacher", kd]
        out["examples"] = [
            {
                "index": i,
                "label": int(inp.y[i]),
                "input": _example_input(inp, i),
                "probs": {n: p for n, p in _probs(inp, i).items() if n in ("teacher", kd)},
            }
            for i in shown
        ]
    return out


def metrics_keys(explain: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-model keys that go into metrics.json."""
    out: dict[str, dict[str, Any]] = {}
    for name in explain["models"]:
        keys: dict[str, Any] = {}
        if name in explain["dark_knowledge"]["distance"]:
            keys["dark_knowledge_distance"] = explain["dark_knowledge"]["distance"][name]["1"]
        if name in explain["attributions"]["agreement"]:
            keys["attribution_agreement"] = explain["attributions"]["agreement"][name]
        if name in explain["faithfulness"]:
            keys["deletion_auc"] = explain["faithfulness"][name]["deletion_auc"]
            keys["infidelity"] = explain["faithfulness"][name]["infidelity"]
        out[name] = keys
    return out


def clean(value: Any) -> Any:
    """JSON-safe: NaN and infinities become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
