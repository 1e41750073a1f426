"""Figures drawn from ``explain.json`` alone (compute -> JSON -> render). Matplotlib, Agg backend."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: figures are files
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 90
METHOD_TITLES = {"integrated_gradients": "IG", "saliency": "saliency", "grad_cam": "Grad-CAM"}


def safe_text(text: str) -> str:
    """Matplotlib treats ``$`` as maths mode; a class name must be drawn literally."""
    return str(text).replace("$", r"\$")


def _names(explain: dict[str, Any], idx: list[int] | None = None) -> list[str]:
    names = [safe_text(c) for c in explain["dataset"]["class_names"]]
    return names if idx is None else [names[i] for i in idx]


def _short(name: str, n: int = 12) -> str:
    return name if len(name) <= n else name[: n - 1] + "…"


def _draw_input(ax, explain: dict[str, Any], values: list, title: str = "") -> None:
    ds = explain["dataset"]
    if isinstance(values, str):  # a text example
        shown = textwrap.fill(safe_text(values[:300]), width=40)
        ax.text(0, 1, shown, va="top", ha="left", fontsize=6, wrap=True)
        ax.axis("off")
        ax.set_title(title, fontsize=8)
        return
    a = np.asarray(values, dtype=float)
    if ds["kind"] == "image":
        img = a.transpose(1, 2, 0) if a.shape[0] == 3 else a[0]
        ax.imshow(np.clip(img, 0, 1), cmap=None if a.shape[0] == 3 else "gray_r")
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        ax.barh(range(len(a)), a, color="0.5")
        ax.set_yticks(range(len(a)))
        ax.set_yticklabels([_short(safe_text(f)) for f in ds["feature_names"]] or None, fontsize=5)
        ax.invert_yaxis()
    ax.set_title(title, fontsize=8)


def _matrix_axes(ax, m: np.ndarray, labels: list[str], title: str, aspect: str = "equal"):
    """Heatmap with the off-diagonal on its own colour scale (grey diagonal), so the small
    wrong-class probabilities that carry the dark knowledge are visible."""
    k = len(m)
    eye = np.eye(k, dtype=bool)
    off = np.ma.masked_where(eye | np.isnan(m), m)
    lo, hi = (float(off.min()), float(off.max())) if off.count() else (0.0, 1.0)
    im = ax.imshow(off, cmap="viridis", vmin=lo, vmax=max(hi, lo + 1e-12), aspect=aspect)
    ax.imshow(np.ma.masked_where(~eye, m), cmap="Greys", vmin=0, vmax=1, aspect=aspect)
    fs = 7 if k <= 12 else 5
    if k <= 30:
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90, fontsize=fs)
        ax.set_yticklabels([_short(s, 8) for s in labels], fontsize=fs)
    ax.set_xlabel("predicted class", fontsize=7)
    ax.set_ylabel("true class", fontsize=7)
    ax.set_title(title, fontsize=8)
    return im


def similarity_figure(explain: dict[str, Any], key: str) -> Figure:
    """Teacher's class-similarity matrix at one temperature, clustered, with the dendrogram drawn
    on the matrix's top edge: leaf i stands over column i."""
    from scipy.cluster.hierarchy import dendrogram

    dk = explain["dark_knowledge"]
    order = dk["order"]
    m = np.asarray(dk["matrices"][key]["teacher"], dtype=float)[np.ix_(order, order)]
    fig = plt.figure(figsize=(5.4, 6.4), dpi=DPI)
    ax = fig.add_axes((0.15, 0.1, 0.62, 0.62))
    t = dk["temperatures"][key]
    im = _matrix_axes(ax, m, _names(explain, order), "", aspect="auto")
    box = ax.get_position()
    # Same left edge and width as the matrix, bottom on its top edge, so no gap and no overhang.
    top = fig.add_axes((box.x0, box.y1, box.width, 0.17))
    if dk["linkage"]:
        dendrogram(np.asarray(dk["linkage"]), ax=top, no_labels=True, color_threshold=0)
        top.set_xlim(0, 10 * len(order))  # scipy puts leaf i at x = 10 i + 5: over column i
        top.set_ylim(bottom=0)
    top.axis("off")
    cax = fig.add_axes((box.x1 + 0.03, box.y0, 0.03, box.height))
    fig.colorbar(im, cax=cax).set_label("mean probability (off-diagonal)", fontsize=7)
    fig.suptitle(f"teacher's class similarity, T = {t:g} (clustered)", fontsize=9, y=0.97)
    return fig


def student_similarity_figure(explain: dict[str, Any]) -> Figure:
    dk = explain["dark_knowledge"]
    names = list(dk["matrices"]["1"])
    order = dk["order"]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), dpi=DPI, squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        m = np.asarray(dk["matrices"]["1"][name], dtype=float)[np.ix_(order, order)]
        d = dk["distance"].get(name, {}).get("1")
        title = name if d is None else f"{name}: distance {d:.3f}"
        _matrix_axes(ax, m, _names(explain, order), safe_text(title))
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def entropy_figure(explain: dict[str, Any]) -> Figure:
    e = explain["dark_knowledge"]["entropy"]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=DPI)
    ax.plot(e["temperatures"], e["teacher"], marker="o", ms=3, label="teacher")
    ax.axhline(e["max"], color="0.5", ls="--", lw=1, label="uniform (log K)")
    ax.axvline(explain["temperature"], color="C3", ls=":", lw=1, label="distillation T")
    ax.set_xlabel("temperature T")
    ax.set_ylabel("mean entropy (nats)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


PROB_FLOOR = 1e-6  # the log axis's floor: smaller probabilities are drawn at it, hatched


def _prob_bars(ax, probs: dict[str, list[float]], labels: list[str]) -> None:
    k = len(labels)
    width = 0.8 / max(1, len(probs))
    for j, (name, p) in enumerate(probs.items()):
        p = np.asarray(p, dtype=float)
        below = p < PROB_FLOOR
        bars = ax.bar(
            np.arange(k) + j * width - 0.4 + width / 2,
            np.maximum(p, PROB_FLOOR),
            width,
            color=f"C{j}",
            label=safe_text(name),
        )
        for bar, low in zip(bars, below, strict=True):
            if low:  # would vanish below the axis: a faint hatched stub says "less than this"
                bar.set_alpha(0.35)
                bar.set_hatch("////")
    # Log scale: the wrong-class probabilities that carry dark knowledge span many decades.
    ax.set_yscale("log")
    ax.set_ylim(PROB_FLOOR / 4, 1.5)
    ax.set_xticks(range(k))
    ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90 if k > 5 else 0, fontsize=7)
    ax.tick_params(axis="y", labelsize=7)


def _examples_figure(
    explain: dict[str, Any], examples: list[dict], keep: set[str] | None
) -> Figure:
    from matplotlib.patches import Patch

    n = len(examples)
    height = 1.9 * n + 0.7
    fig, axes = plt.subplots(
        n, 2, figsize=(7.5, height), dpi=DPI, squeeze=False, gridspec_kw={"width_ratios": [1, 3]}
    )
    labels = _names(explain)
    for row, ex in zip(axes, examples, strict=True):
        probs = {n: p for n, p in ex["probs"].items() if keep is None or n in keep}
        said = ", ".join(
            f"{_short(safe_text(n), 8)}: {labels[int(np.argmax(p))]}" for n, p in probs.items()
        )
        title = f"#{ex['index']} true: {labels[ex['label']]}"
        _draw_input(row[0], explain, ex["input"], title if keep is None else f"{title}\n{said}")
        _prob_bars(row[1], probs, labels)
    # The legend sits above the plots, where it covers no bar.
    handles, names = axes[0][1].get_legend_handles_labels()
    floor = Patch(facecolor="0.8", hatch="////", label=f"below {PROB_FLOOR:g} (drawn at it)")
    fig.legend(
        [*handles, floor],
        [*names, floor.get_label()],
        loc="upper center",
        ncol=min(4, len(handles) + 1),
        fontsize=7,
        frameon=False,
    )
    rows_of_legend = math.ceil((len(handles) + 1) / 4)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.18 * rows_of_legend / height))
    return fig


def examples_figure(explain: dict[str, Any]) -> Figure | None:
    examples = explain["dark_knowledge"]["examples"]
    if not examples:
        return None
    return _examples_figure(explain, examples, None)


def attribution_figure(explain: dict[str, Any]) -> Figure | None:
    """Columns: examples (the input on top). Rows: each model's maps, one row per method, labelled
    in full on the left; colour scales at the bottom (each map is scaled to its own maximum)."""
    at = explain["attributions"]
    examples, maps = at["examples"], at["maps"]
    if not examples or not maps:
        return None
    rows = [(m, meth) for m, per in maps.items() for meth in per]
    n, r = len(examples), len(rows) + 1
    image = explain["dataset"]["kind"] == "image"
    cell, scale_band = (1.35, 0.75) if image else (2.2, 0.0)
    height = cell * r + scale_band + 0.3
    fig, axes = plt.subplots(r, n, figsize=(cell * n + 2.0, height), dpi=DPI, squeeze=False)
    labels = _names(explain)
    for j, ex in enumerate(examples):
        _draw_input(axes[0][j], explain, ex["input"], f"class {labels[ex['target']]}")
    axes[0][0].set_ylabel("input", rotation=0, ha="right", va="center", fontsize=9)
    for i, (model, meth) in enumerate(rows, start=1):
        signed = meth == "integrated_gradients"
        for j in range(n):
            a = np.asarray(maps[model][meth][j], dtype=float)
            ax = axes[i][j]
            lim = float(np.abs(a).max()) or 1.0
            if image:
                ax.imshow(
                    a / lim, cmap="RdBu_r" if signed else "magma", vmin=-1 if signed else 0, vmax=1
                )
                ax.set_xticks([])
                ax.set_yticks([])
            else:
                ax.barh(range(len(a)), a, color=np.where(a >= 0, "C3", "C0"))
                ax.set_yticks([])
                ax.invert_yaxis()
                ax.tick_params(axis="x", labelsize=6)
        label = f"{safe_text(model)}\n{METHOD_TITLES.get(meth, meth)}"
        axes[i][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    fig.tight_layout(rect=(0, scale_band / height, 1, 1))
    if image:
        _attribution_scales(fig, scale_band / height)
    return fig


def _attribution_scales(fig: Figure, band: float) -> None:
    """Two colour scales under the grid: IG is signed, saliency and Grad-CAM are magnitudes."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    for x0, cmap, lo, text in (
        (0.12, "RdBu_r", -1, "IG ÷ its map's max |IG|: blue against, red for the class"),
        (0.56, "magma", 0, "saliency, Grad-CAM ÷ their map's max"),
    ):
        cax = fig.add_axes((x0, band * 0.55, 0.34, band * 0.16))
        bar = fig.colorbar(
            ScalarMappable(Normalize(lo, 1), cmap), cax=cax, orientation="horizontal"
        )
        bar.set_ticks([lo, (lo + 1) / 2, 1])
        bar.ax.tick_params(labelsize=7)
        bar.set_label(text, fontsize=8)


def agreement_figure(explain: dict[str, Any]) -> Figure | None:
    """Each model's agreement with the teacher's IG, beside two reference levels: a random ranking
    (chance) and the input alone (IG always starts from x - baseline)."""
    at = explain["attributions"]
    ag = at["agreement"]
    if not ag:
        return None
    keys = ["spearman", "cosine", "topk_overlap"]
    fig, ax = plt.subplots(figsize=(7, 3.4), dpi=DPI)
    width = 0.8 / len(ag)
    for j, (name, vals) in enumerate(ag.items()):
        ys = [vals[k] if vals[k] is not None else np.nan for k in keys]
        ax.bar(np.arange(3) + j * width - 0.4 + width / 2, ys, width, label=safe_text(name))
    ax.axhline(0, color="0.3", lw=0.8)
    chance = [0.0, 0.0, at["topk"]]
    ax.hlines(
        chance,
        np.arange(3) - 0.45,
        np.arange(3) + 0.45,
        colors="k",
        linestyles=":",
        lw=1.2,
        label="chance (random ranking)",
    )
    if at.get("input_agreement"):
        level = [at["input_agreement"][k] or 0.0 for k in keys]
        ax.hlines(
            level,
            np.arange(3) - 0.45,
            np.arange(3) + 0.45,
            colors="k",
            linestyles="--",
            lw=1.2,
            label="the input alone (input − baseline)",
        )
    ax.set_xticks(range(3))
    ax.set_xticklabels(["Spearman", "cosine", f"top-{100 * at['topk']:g}% overlap"])
    ax.set_ylabel("agreement with the teacher's IG")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def deletion_figure(explain: dict[str, Any]) -> Figure | None:
    fa = explain["faithfulness"]
    if not fa:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 3.4), dpi=DPI)
    for j, (name, f) in enumerate(fa.items()):
        ax.plot(
            f["fractions"],
            f["accuracy"],
            color=f"C{j}",
            label=f"{safe_text(name)} (AUC {f['deletion_auc']:.3f})",
        )
        ax.plot(f["fractions"], f["accuracy_random"], color=f"C{j}", ls=":", lw=1)
    ax.set_xlabel("share of input features removed (dotted: in random order)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    return fig


def confusion_figure(explain: dict[str, Any]) -> Figure:
    conf = explain["disagreements"]["confusion"]
    cols = min(4, len(conf))
    rows = math.ceil(len(conf) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.3 * rows), dpi=DPI, squeeze=False)
    labels = _names(explain)
    k = len(labels)
    for ax, (name, c) in zip(axes.flat, conf.items(), strict=False):
        c = np.asarray(c, dtype=float)
        ax.imshow(np.log1p(c), cmap="Blues")
        if k <= 12:
            for i in range(k):
                for j in range(k):
                    if c[i, j]:
                        ax.text(j, i, int(c[i, j]), ha="center", va="center", fontsize=5)
        if k <= 30:
            ax.set_xticks(range(k))
            ax.set_yticks(range(k))
            ax.set_xticklabels([_short(s, 8) for s in labels], rotation=90, fontsize=6)
            ax.set_yticklabels([_short(s, 8) for s in labels], fontsize=6)
        ax.set_xlabel("predicted", fontsize=7)
        ax.set_ylabel("true", fontsize=7)
        ax.set_title(safe_text(name), fontsize=8)
    for ax in list(axes.flat)[len(conf) :]:
        ax.axis("off")
    fig.tight_layout(h_pad=1.5)  # a row's axis labels clear the next row's titles
    return fig


def disagreement_figure(explain: dict[str, Any]) -> Figure | None:
    examples = explain["disagreements"]["examples"]
    if not examples:
        return None
    return _examples_figure(explain, examples, set(explain["disagreements"]["pair"]))


FIGURES: dict[str, Callable[[dict[str, Any]], Figure | None]] = {
    "similarity_t1": lambda e: similarity_figure(e, "1"),
    "similarity_tdistill": lambda e: similarity_figure(e, "distill"),
    "similarity_models": student_similarity_figure,
    "entropy_vs_t": entropy_figure,
    "example_probabilities": examples_figure,
    "attributions": attribution_figure,
    "agreement": agreement_figure,
    "deletion": deletion_figure,
    "confusion": confusion_figure,
    "disagreements": disagreement_figure,
}


def save_figures(explain: dict[str, Any], folder: str | Path) -> dict[str, Path]:
    """Draw every figure that has data; returns name -> PNG path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in FIGURES.items():
        fig = draw(explain)
        if fig is None:
            continue
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        out[name] = path
    return out
