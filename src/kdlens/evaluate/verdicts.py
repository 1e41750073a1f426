"""Paired statistics behind kdlens's verdicts: is a student better than its twin, and by how much?

Every verdict compares two models on the *same* test examples, so the statistics are paired:
McNemar's exact test on the examples only one of them gets right, and a percentile bootstrap over
test examples that resamples both models with the same indices. Point estimates are the
:mod:`kdlens.evaluate.metrics` numbers (what ``metrics.json`` holds), so a verdict never disagrees
with the table beside it.

Cost: the bootstrap draws its resample counts once (:class:`Resampler`, an ``(R, n)`` count matrix)
and every statistic of every verdict is a mean of per-example values, i.e. one ``(R, n) @ (n, k)``
product; see docs/benchmarks.md, "Verdict statistics".

Everything here is a pure function of arrays or tensors returning JSON-able dicts and strings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache, wraps
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import signal, stats

from kdlens.evaluate.metrics import accuracy, calibration_bins, expected_calibration_error, nll

LEVEL = 0.05  # a verdict's significance level; its intervals are 1 - LEVEL = 95 %
HELPED, HURT, NO_DIFFERENCE = "helped", "hurt", "no significant difference"

ArrayLike = torch.Tensor | np.ndarray | Sequence


_FLOAT_COUNTS = 16_000_000  # count matrices up to 64 MB as float32: 10,000 resamples of 1,600


class Resampler:
    """Bootstrap resamples of ``n`` test examples, drawn once from ``seed`` and shared by every verdict.

    ``counts[r, i]`` is how many times example ``i`` is drawn in resample ``r`` (each row sums to
    ``n``), so the mean of per-example values in every resample is ``counts @ values / n``. Using one
    resampler for two models is what makes the bootstrap paired.
    """

    def __init__(self, n: int, resamples: int = 10_000, seed: int = 0):
        if n < 1 or resamples < 1:
            raise ValueError(
                f"a resampler needs n >= 1 and resamples >= 1, not {n} and {resamples}"
            )
        rng = np.random.default_rng(seed)
        # Drawn as uint8 (a 10,000-example test set: 100 MB, not 400): one example drawn > 255
        # times in n draws has probability below 1/256!, and never happens for n <= 255.
        counts = np.empty((resamples, n), np.uint8)
        step = max(1, 2_000_000 // n)  # rows per chunk: the index draws stay near 16 MB
        for start in range(0, resamples, step):
            rows = min(step, resamples - start)
            idx = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
            counts[start : start + rows] = np.bincount(idx.ravel(), minlength=rows * n).reshape(
                rows, n
            )
        if counts.size <= _FLOAT_COUNTS:  # kept as float32, each verdict skips the conversion
            counts = counts.astype(np.float32)
        self.n, self.resamples, self.seed, self.counts = n, resamples, seed, counts

    @classmethod
    def from_counts(cls, counts: np.ndarray) -> Resampler:
        """A resampler with given counts (each row must sum to n): for tests and special designs."""
        counts = np.asarray(counts)
        if counts.ndim != 2 or not (counts.sum(1) == counts.shape[1]).all():
            raise ValueError("counts must be (resamples, n) with every row summing to n")
        self = cls.__new__(cls)
        self.resamples, self.n = counts.shape
        self.seed, self.counts = None, counts.astype(np.float32)
        return self

    def means(self, values: np.ndarray) -> np.ndarray:
        """``(n, k)`` per-example values -> ``(R, k)``: their mean in every resample (float64)."""
        values = np.asarray(values, np.float32)
        if values.shape[0] != self.n:
            raise ValueError(f"{values.shape[0]} examples given to a resampler of {self.n}")
        out = np.empty((self.resamples, values.shape[1]), np.float64)
        step = max(1, 4_000_000 // self.n)  # float32 chunks of about 16 MB
        for start in range(0, self.resamples, step):
            chunk = self.counts[start : start + step].astype(np.float32, copy=False)
            out[start : start + step] = chunk @ values  # (rows, n) @ (n, k)
        return out / self.n


@lru_cache(maxsize=1)
def _shared_resampler(n: int, resamples: int, seed: int) -> Resampler:
    # One run's verdicts share n, resamples and seed: draw the counts once, not once per verdict.
    return Resampler(n, resamples, seed)


def _resampler(n: int, resamples: int, seed: int, resampler: Resampler | None) -> Resampler:
    if resampler is None:
        return _shared_resampler(n, resamples, seed)
    if resampler.n != n:
        raise ValueError(f"the resampler is for {resampler.n} examples, the test set has {n}")
    return resampler


def _interval(samples: np.ndarray) -> list[float] | None:
    if samples.size == 0:
        return None
    lo, hi = np.quantile(samples, [LEVEL / 2, 1 - LEVEL / 2])
    return [float(lo), float(hi)]


def mcnemar(a_only: int, b_only: int) -> float:
    """McNemar's exact test: two-sided binomial p-value of the discordant pairs (1 when there are none)."""
    if a_only + b_only == 0:
        return 1.0
    return float(stats.binomtest(int(a_only), int(a_only + b_only), 0.5).pvalue)


def _conclusion(p_value: float, direction: float) -> str:
    if p_value < LEVEL and direction > 0:
        return HELPED
    if p_value < LEVEL and direction < 0:
        return HURT
    return NO_DIFFERENCE


def _one_torch_thread(fn):
    """Run ``fn`` with one intra-op thread: its tensors are n x classes, too small to split. On the
    shared 2-core machine under load, two threads cost ~20 ms of synchronisation per op: one
    verdict took 0.5 s with two threads and 0.1 s with one."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)

    return wrapper


def _inputs(y: ArrayLike, *logits: ArrayLike) -> tuple[torch.Tensor, list[torch.Tensor]]:
    y = torch.as_tensor(y).long().cpu()
    # Keep the dtype: the metrics functions cast as they do for metrics.json.
    out = [torch.as_tensor(x).detach().cpu() for x in logits]
    for x in out:
        if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape != out[0].shape:
            shapes = ", ".join(str(tuple(x.shape)) for x in out)
            raise ValueError(f"logits of shapes {shapes} for {y.shape[0]} labels")
    return y, out


def _correct(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    return (logits.argmax(-1) == y).numpy()  # the definition of metrics.accuracy


def _per_example(logits: torch.Tensor, y: torch.Tensor, n_bins: int) -> np.ndarray:
    """Models' ``(m, n, classes)`` logits -> ``(n, m * (2 + n_bins))``: per model, whether right,
    NLL, and confidence - correct in the column of the example's calibration bin.

    ECE = sum over bins of |sum_{i in bin} (confidence_i - correct_i)| / n, as
    metrics.expected_calibration_error computes it, so its per-bin sums are means of these columns.
    All models go through each op at once: small ops, not threads, dominate the time here.
    """
    m, n = logits.shape[:2]
    confidence, correct, bins = calibration_bins(logits, y, n_bins)  # (m, n) each
    per_bin = torch.zeros(m, n, n_bins).scatter_(
        2, bins[..., None], (confidence - correct)[..., None]
    )
    flat = logits.float().reshape(m * n, -1)
    losses = F.cross_entropy(flat, y.repeat(m), reduction="none").reshape(m, n)
    hits = (logits.argmax(-1) == y).float()  # the definition of metrics.accuracy
    columns = torch.cat([hits[..., None], losses[..., None], per_bin], 2)  # (m, n, 2 + n_bins)
    return columns.permute(1, 0, 2).reshape(n, -1).numpy()


@_one_torch_thread
def compare(
    y: ArrayLike,
    logits_a: ArrayLike,
    logits_b: ArrayLike,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    resampler: Resampler | None = None,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Model a (e.g. the distilled student) against its twin b (e.g. scratch) on the same examples.

    Differences are a minus b (accuracy as a fraction, NLL in nats, ECE). Intervals: paired
    percentile bootstrap over test examples. p-value: McNemar's exact test. ``conclusion`` is
    "helped" / "hurt" (p < 0.05, a better / worse) or "no significant difference". Without
    ``resampler``, one is drawn from ``(n, resamples, seed)`` and kept for the next call.
    """
    y, (a, b) = _inputs(y, logits_a, logits_b)
    n = len(y)
    boot = _resampler(n, resamples, seed, resampler)
    k = 2 + n_bins
    means = boot.means(_per_example(torch.stack([a, b]), y, n_bins))  # (R, 2 * k)
    ece = [np.abs(means[:, s + 2 : s + k]).sum(1) for s in (0, k)]  # (R,) per model

    correct_a, correct_b = _correct(a, y), _correct(b, y)
    a_only = int((correct_a & ~correct_b).sum())
    b_only = int((~correct_a & correct_b).sum())
    p_value = mcnemar(a_only, b_only)
    return {
        "accuracy_difference": accuracy(a, y) - accuracy(b, y),
        "ci95": _interval(means[:, 0] - means[:, k]),
        "p_value": p_value,
        "test": "mcnemar",
        "conclusion": _conclusion(p_value, a_only - b_only),
        "nll_difference": nll(a, y) - nll(b, y),
        "nll_ci95": _interval(means[:, 1] - means[:, k + 1]),
        "ece_difference": expected_calibration_error(a, y, n_bins)
        - expected_calibration_error(b, y, n_bins),
        "ece_ci95": _interval(ece[0] - ece[1]),
        "a_only_correct": a_only,
        "b_only_correct": b_only,
        "n": n,
    }


@_one_torch_thread
def gap_closed(
    y: ArrayLike,
    teacher_logits: ArrayLike,
    scratch_logits: ArrayLike,
    kd_logits: ArrayLike,
    *,
    resamples: int = 10_000,
    seed: int = 0,
    resampler: Resampler | None = None,
) -> dict[str, Any]:
    """Share of the teacher-scratch accuracy gap that distillation closed: (kd - scratch) / (teacher - scratch).

    Measurable only when the teacher is significantly better than scratch (McNemar, p < 0.05);
    otherwise ``value`` and ``ci95`` are None and ``measurable`` is False. The interval is a paired
    percentile bootstrap of the ratio over the resamples whose teacher-scratch gap is positive:
    a resample without a gap has no share to close (its ratio would be inf or of flipped sign), so
    it is left out and counted in ``resamples_dropped``. With a significant gap they are few,
    roughly at most p / 2 of the resamples.
    """
    y, (teacher, scratch, kd) = _inputs(y, teacher_logits, scratch_logits, kd_logits)
    n = len(y)
    acc = {m: accuracy(x, y) for m, x in (("teacher", teacher), ("scratch", scratch), ("kd", kd))}
    correct_t, correct_s = _correct(teacher, y), _correct(scratch, y)
    t_only = int((correct_t & ~correct_s).sum())
    s_only = int((~correct_t & correct_s).sum())
    p_value = mcnemar(t_only, s_only)
    out: dict[str, Any] = {
        "value": None,
        "ci95": None,
        "measurable": p_value < LEVEL and t_only > s_only,
        "teacher_accuracy": acc["teacher"],
        "scratch_accuracy": acc["scratch"],
        "kd_accuracy": acc["kd"],
        "gap": acc["teacher"] - acc["scratch"],
        "gap_p_value": p_value,
        "teacher_only_correct": t_only,
        "scratch_only_correct": s_only,
        "resamples_dropped": 0,
        "n": n,
    }
    if not out["measurable"]:
        return out
    boot = _resampler(n, resamples, seed, resampler)
    means = boot.means(np.stack([correct_t, correct_s, _correct(kd, y)], 1))  # (R, 3)
    gap = means[:, 0] - means[:, 1]
    kept = gap > 0
    out["value"] = (acc["kd"] - acc["scratch"]) / out["gap"]
    out["ci95"] = _interval((means[kept, 2] - means[kept, 1]) / gap[kept])
    out["resamples_dropped"] = int((~kept).sum())
    return out


# --- across seeds -------------------------------------------------------------------------------


def mean_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample standard deviation (n - 1) and 95 % t-interval of per-seed values.

    With one value the spread is unknown: ``std`` and ``ci95`` are None.
    """
    x = np.asarray(values, np.float64)
    n = int(x.size)
    if n == 0:
        raise ValueError("no values to summarize")
    mean = float(x.mean())
    if n == 1:
        return {"mean": mean, "std": None, "ci95": None, "n": 1}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - LEVEL / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95": [mean - half, mean + half], "n": n}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def across_seeds(per_seed: Sequence[dict]) -> dict[str, Any]:
    """Summarize every metric of per-seed dicts (e.g. their ``metrics.json``) with :func:`mean_interval`.

    Nested dicts are followed and the result has the same shape, each number replaced by its
    summary; a metric is summarized over the seeds that have it (``n`` says how many). Strings,
    lists, booleans and None are left out.
    """
    out: dict[str, Any] = {}
    keys = list(dict.fromkeys(k for d in per_seed for k in d))  # first-seen order
    for key in keys:
        present = [d[key] for d in per_seed if key in d]
        numbers = [v for v in present if _is_number(v)]
        nested = [v for v in present if isinstance(v, dict)]
        if numbers:
            out[key] = mean_interval(numbers)
        elif nested:
            summary = across_seeds(nested)
            if summary:
                out[key] = summary
    return out


@_one_torch_thread
def net_wins(
    test_ids: Sequence[ArrayLike],
    y: Sequence[ArrayLike],
    logits_a: Sequence[ArrayLike],
    logits_b: Sequence[ArrayLike],
) -> dict[str, Any]:
    """Per test example, over all seeds whose test split holds it: (times a right) - (times b right).

    Arguments are per-seed lists: the dataset indices of each seed's test split, its labels and both
    models' logits. Returns histograms: ``a_ahead[k - 1]`` examples where a is ahead by k, and
    likewise ``b_ahead``; input to :func:`verdict_across_seeds` when seeds share test examples.
    """
    if not len(test_ids) == len(y) == len(logits_a) == len(logits_b) >= 1:
        raise ValueError("net_wins needs the same number (>= 1) of seeds in every argument")
    ids = [np.asarray(torch.as_tensor(i).cpu(), np.int64) for i in test_ids]
    size = int(max(i.max() for i in ids)) + 1
    net = np.zeros(size, np.int64)
    seen = np.zeros(size, np.int64)
    for idx, labels, a, b in zip(ids, y, logits_a, logits_b, strict=True):
        labels, (a, b) = _inputs(labels, a, b)
        if len(idx) != len(labels):
            raise ValueError(f"{len(idx)} test indices for {len(labels)} labels")
        np.add.at(net, idx, _correct(a, labels).astype(np.int64) - _correct(b, labels))
        np.add.at(seen, idx, 1)
    top = max(1, int(np.abs(net).max()))
    return {
        "a_ahead": np.bincount(net[net > 0], minlength=top + 1)[1:].tolist(),
        "b_ahead": np.bincount(-net[net < 0], minlength=top + 1)[1:].tolist(),
        "examples": int((seen > 0).sum()),
        "examples_in_several_seeds": int((seen > 1).sum()),
    }


def sign_flip_test(a_ahead: Sequence[int], b_ahead: Sequence[int]) -> float:
    """Exact two-sided p-value that a and b are exchangeable on every example, from net-win histograms.

    Under the null each example's net win is as likely +k as -k, independently. The statistic is
    a's total lead; its exact distribution is a convolution of binomials, one per k. When every
    example is ahead by at most 1 (disjoint test splits) this is McNemar's exact test.
    """
    a_ahead, b_ahead = np.asarray(a_ahead, np.int64), np.asarray(b_ahead, np.int64)
    counts = a_ahead + b_ahead  # m_k examples decided by k
    total = int((np.arange(1, counts.size + 1) * counts).sum())
    if total == 0:
        return 1.0
    pmf = np.ones(1)  # of W = sum over examples won by a of their k
    for k, m in enumerate(counts.tolist(), start=1):
        if m == 0:
            continue
        spread = np.zeros(k * m + 1)
        spread[::k] = stats.binom.pmf(np.arange(m + 1), m, 0.5)
        small = pmf.size * spread.size < 10_000_000
        pmf = np.convolve(pmf, spread) if small else np.clip(signal.fftconvolve(pmf, spread), 0, 1)
    observed = int((np.arange(1, a_ahead.size + 1) * a_ahead).sum())
    w = np.arange(pmf.size)
    # Compare doubled distances to the centre total / 2 so that everything stays an integer.
    return float(min(1.0, pmf[np.abs(2 * w - total) >= abs(2 * observed - total)].sum()))


def verdict_across_seeds(
    per_seed_comparisons: Sequence[dict], example_wins: dict | None = None
) -> dict[str, Any]:
    """One verdict over seeds for a student against its twin, from each seed's :func:`compare`.

    Sizes: ``accuracy_difference`` (and NLL, ECE) is the mean over seeds with a 95 % t-interval
    over seeds, so it includes the training noise between seeds (``interval``: "t over seeds");
    with one seed it is that seed's bootstrap interval. Test: one pooled exact test, more powerful
    than counting significant seeds (``seeds_helped`` / ``seeds_hurt`` are reported too):

    - without ``example_wins``: McNemar on the discordant pairs summed over seeds. That is valid only
      when the seeds' test splits are disjoint, independent strata. kdlens's splits are not: a
      dataset with a fixed test set gives every seed the same examples, and a drawn split (mnist5k)
      redraws its test set from the same pool, so an example counted in several seeds would be
      counted as independent evidence several times and the p-value comes out too small.
    - with ``example_wins`` (:func:`net_wins` of the seeds' test indices): the exact sign-flip test
      on each example's net wins over seeds, valid whether or not the splits share examples; on
      disjoint splits it equals the pooled McNemar.

    Both test the trained models at hand on test-set noise; only the t-interval speaks for the
    training noise, and it needs several seeds to be narrow.
    """
    seeds = len(per_seed_comparisons)
    if seeds == 0:
        raise ValueError("no per-seed comparisons")
    a_only = sum(c["a_only_correct"] for c in per_seed_comparisons)
    b_only = sum(c["b_only_correct"] for c in per_seed_comparisons)
    if example_wins is None:
        p_value, test, direction = (
            mcnemar(a_only, b_only),
            "mcnemar, pooled over seeds",
            a_only - b_only,
        )
    else:
        a_ahead, b_ahead = example_wins["a_ahead"], example_wins["b_ahead"]
        p_value = sign_flip_test(a_ahead, b_ahead)
        test = "sign-flip over examples, pooled over seeds"
        direction = sum(
            k * (a - b) for k, (a, b) in enumerate(zip(a_ahead, b_ahead, strict=True), start=1)
        )
    out: dict[str, Any] = {}
    for metric, ci_key in (("accuracy", "ci95"), ("nll", "nll_ci95"), ("ece", "ece_ci95")):
        summary = mean_interval([c[f"{metric}_difference"] for c in per_seed_comparisons])
        out[f"{metric}_difference"] = summary["mean"]
        out[ci_key] = summary["ci95"] if seeds > 1 else per_seed_comparisons[0][ci_key]
        out[f"{metric}_difference_std"] = summary["std"]
    conclusions = [c["conclusion"] for c in per_seed_comparisons]
    return {
        **out,
        "interval": "t over seeds" if seeds > 1 else "bootstrap over test examples",
        "p_value": p_value,
        "test": test,
        "conclusion": _conclusion(p_value, direction),
        "a_only_correct": a_only,
        "b_only_correct": b_only,
        "n": sum(c["n"] for c in per_seed_comparisons),
        "seeds": seeds,
        "seeds_helped": conclusions.count(HELPED),
        "seeds_hurt": conclusions.count(HURT),
    }


# --- words --------------------------------------------------------------------------------------


def format_p(p: float) -> str:
    """'p < 0.001', 'p = 0.0019', 'p = 0.01', 'p = 0.0496' (never rounded onto or across 0.05), 'p = 1'."""
    if p < 0.001:
        return "p < 0.001"
    if p >= 0.995:
        return "p = 1"
    for digits in range(2, 7):  # more digits only where rounding would blur the 5 % line
        text = f"{p:.{digits}g}"
        if (float(text) < LEVEL) == (p < LEVEL) and float(text) != LEVEL:
            break
    return f"p = {text}"


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def describe(
    verdict: dict,
    *,
    name: str,
    twin: str,
    seeds: int | None = None,
    ece: tuple[float, float] | None = None,
) -> str:
    """One plain-text line for a :func:`compare` or :func:`verdict_across_seeds` verdict.

    ``ece``: the two models' ECE (a, b) to print beside the difference, e.g. from ``metrics.json``.
    ``seeds`` defaults to the verdict's own count (1 for :func:`compare`).
    """
    seeds = seeds if seeds is not None else verdict.get("seeds", 1)
    points = _points(verdict["accuracy_difference"])
    details = []
    if verdict.get("ci95"):
        lo, hi = verdict["ci95"]
        over = " over seeds" if verdict.get("interval") == "t over seeds" else ""
        details.append(f"95% CI{over} {_points(lo)} to {_points(hi)}")
    details.append(format_p(verdict["p_value"]))
    counted = f"{seeds} seed" + ("s" if seeds != 1 else "")
    if seeds > 1 and "seeds_helped" in verdict:
        counted += f", helped on {verdict['seeds_helped']}, hurt on {verdict['seeds_hurt']}"
    inside = f"({', '.join(details)}; {counted})"
    if verdict["conclusion"] == HELPED:
        line = f"{name} helped: {points} points over {twin} {inside}"
    elif verdict["conclusion"] == HURT:
        line = f"{name} hurt: {points} points against {twin} {inside}"
    else:
        line = f"{name}: no significant difference from {twin}, {points} points {inside}"
    return f"{line}; calibration: {_describe_ece(verdict, ece)}"


def _describe_ece(verdict: dict, ece: tuple[float, float] | None) -> str:
    interval = verdict.get("ece_ci95")
    if interval is None:
        word, ci = "spread unknown", ""
    else:
        lo, hi = interval
        # Lower ECE is better calibrated; the interval must exclude 0 to call it either way.
        word = "worse" if lo > 0 else "better" if hi < 0 else "no clear difference"
        ci = f", 95% CI of the difference {lo:+.3f} to {hi:+.3f}"
    if ece is not None:
        return f"ECE {ece[0]:.3f} vs {ece[1]:.3f} ({word}{ci})"
    return f"ECE difference {verdict['ece_difference']:+.3f} ({word}{ci})"


def describe_gap(
    gap: dict, *, name: str = "distillation", teacher: str = "teacher", twin: str = "scratch"
) -> str:
    """One plain-text line for :func:`gap_closed`."""
    both = f"{teacher} {gap['teacher_accuracy']:.1%} vs {twin} {gap['scratch_accuracy']:.1%}"
    if gap["gap"] <= 0:
        return f"there is no {teacher}-{twin} gap to close ({both})"
    if not gap["measurable"]:
        return f"the {teacher}-{twin} gap is too small to measure ({both}, {format_p(gap['gap_p_value'])})"
    line = f"{name} closed {gap['value']:.0%} of the {teacher}-{twin} gap"
    if gap["ci95"] is None:
        return f"{line} (no interval: no resample kept a gap)"
    lo, hi = gap["ci95"]
    dropped = gap["resamples_dropped"]
    note = f"; {dropped} resamples without a gap left out" if dropped else ""
    return f"{line} (95% CI {lo:.0%} to {hi:.0%}{note})"
