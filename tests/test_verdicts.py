import json
import math

import numpy as np
import pytest
import torch
from scipy import stats

from kdlens.evaluate import verdicts as v
from kdlens.evaluate.metrics import accuracy, expected_calibration_error, nll

T_975_DF2 = 4.302653  # Student's t, 97.5th percentile, 2 degrees of freedom (from tables)


def logits_for(y: torch.Tensor, correct: torch.Tensor, confidence: float = 2.0, classes: int = 3):
    """Logits that predict y where ``correct`` and the next class elsewhere."""
    predicted = torch.where(correct, y, (y + 1) % classes)
    out = torch.zeros(len(y), classes)
    out[torch.arange(len(y)), predicted] = confidence
    return out


def random_models(n: int, seed: int = 0, classes: int = 10):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    a = torch.randn(n, classes, generator=g)
    b = torch.randn(n, classes, generator=g)
    a[torch.arange(n), y] += 2.5  # about 80 % right
    b[torch.arange(n), y] += 2.0  # about 70 % right
    return y, a, b


def test_mcnemar_exact_p_by_hand_and_conclusion():
    y = torch.zeros(30, dtype=torch.long)
    a = logits_for(y, torch.ones(30, dtype=torch.bool))
    b = logits_for(y, torch.arange(30) >= 10)  # wrong on the first 10, where a is right
    out = v.compare(y, a, b, resamples=500)
    assert (out["a_only_correct"], out["b_only_correct"], out["n"]) == (10, 0, 30)
    assert out["p_value"] == pytest.approx(2 * 0.5**10, rel=1e-12)
    assert out["test"] == "mcnemar" and out["conclusion"] == "helped"
    assert out["accuracy_difference"] == pytest.approx(10 / 30)
    assert v.compare(y, b, a, resamples=500)["conclusion"] == "hurt"
    # 6 against 2 discordant: p = 2 * P(X <= 2), X ~ Bin(8, 1/2) = 2 * 37/256.
    assert v.mcnemar(6, 2) == pytest.approx(2 * 37 / 256)


def test_identical_models_differ_by_nothing():
    y, a, _ = random_models(200)
    out = v.compare(y, a, a.clone(), resamples=500)
    assert out["accuracy_difference"] == 0 and out["p_value"] == 1.0
    assert out["conclusion"] == "no significant difference"
    for key in ("ci95", "nll_ci95", "ece_ci95"):
        assert out[key] == [0.0, 0.0]
    assert out["nll_difference"] == 0 and out["ece_difference"] == 0


def test_point_estimates_are_the_metrics_numbers():
    y, a, b = random_models(300)
    out = v.compare(y, a, b, resamples=500)
    assert out["accuracy_difference"] == accuracy(a, y) - accuracy(b, y)
    assert out["nll_difference"] == nll(a, y) - nll(b, y)
    assert out["ece_difference"] == expected_calibration_error(a, y) - expected_calibration_error(
        b, y
    )
    assert set(out) == {
        "accuracy_difference", "ci95", "p_value", "test", "conclusion", "nll_difference",
        "nll_ci95", "ece_difference", "ece_ci95", "a_only_correct", "b_only_correct", "n",
    }  # fmt: skip
    json.dumps(out, allow_nan=False)


def test_unit_resample_gives_back_every_statistic():
    # One "resample" drawing every example once: each bootstrap statistic is the point estimate,
    # which checks the per-bin ECE sums against metrics.expected_calibration_error.
    y, a, b = random_models(400, seed=1)
    once = v.Resampler.from_counts(np.ones((1, 400), np.uint8))
    out = v.compare(y, a, b, resampler=once)
    for key, ci in (("accuracy", "ci95"), ("nll", "nll_ci95"), ("ece", "ece_ci95")):
        assert out[ci][0] == pytest.approx(out[f"{key}_difference"], abs=1e-5)


def test_interval_holds_the_estimate_and_shrinks_with_n():
    widths = []
    for n in (200, 2000):
        y, a, b = random_models(n, seed=2)
        out = v.compare(y, a, b, resamples=2000)
        lo, hi = out["ci95"]
        assert lo < out["accuracy_difference"] < hi
        assert out["ece_ci95"][0] < out["ece_difference"] < out["ece_ci95"][1]
        widths.append(hi - lo)
    # The width goes as 1 / sqrt(n): 10x the examples, about 0.32x the width.
    assert 0.2 < widths[1] / widths[0] < 0.45


def test_bootstrap_reproducible_by_seed():
    assert (v.Resampler(50, 100, seed=3).counts == v.Resampler(50, 100, seed=3).counts).all()
    counts = v.Resampler(50, 100, seed=4).counts
    assert (counts.sum(1) == 50).all() and counts.mean() == 1
    y, a, b = random_models(300)
    first = v.compare(y, a, b, resamples=1000, seed=1)
    assert v.compare(y, a, b, resamples=1000, seed=1) == first
    assert v.compare(y, a, b, resamples=1000, seed=2)["ci95"] != first["ci95"]
    assert v.compare(y, a, b, resampler=v.Resampler(300, 1000, seed=1)) == first


def test_bad_shapes_are_refused():
    y, a, b = random_models(20)
    with pytest.raises(ValueError, match=r"\(10, 10\), \(20, 10\) for 20 labels"):
        v.compare(y, a[:10], b)
    with pytest.raises(ValueError, match="resampler is for 10"):
        v.compare(y, a, b, resampler=v.Resampler(10, 5))


def test_gap_closed_known_share():
    n = 200
    y = torch.zeros(n, dtype=torch.long)
    teacher = logits_for(y, torch.ones(n, dtype=torch.bool))
    scratch = logits_for(y, torch.arange(n) >= 40)  # 80 %
    kd = logits_for(y, torch.arange(n) >= 10)  # 95 %: closes 30 of the 40 points' gap
    out = v.gap_closed(y, teacher, scratch, kd, resamples=2000)
    assert out["measurable"] and out["value"] == pytest.approx(0.75)
    assert out["ci95"][0] < 0.75 < out["ci95"][1] and out["resamples_dropped"] == 0
    assert out["gap_p_value"] == pytest.approx(2 * 0.5**40)
    assert v.describe_gap(out) == (
        f"distillation closed 75% of the teacher-scratch gap "
        f"(95% CI {out['ci95'][0]:.0%} to {out['ci95'][1]:.0%})"
    )
    json.dumps(out, allow_nan=False)


def test_gap_too_small_or_absent():
    n = 100
    y = torch.zeros(n, dtype=torch.long)
    teacher = logits_for(y, torch.ones(n, dtype=torch.bool))
    scratch = logits_for(y, torch.arange(n) >= 2)  # 2 discordant pairs: p = 0.5
    out = v.gap_closed(y, teacher, scratch, teacher)
    assert not out["measurable"] and out["value"] is None and out["ci95"] is None
    assert v.describe_gap(out) == (
        "the teacher-scratch gap is too small to measure (teacher 100.0% vs scratch 98.0%, p = 0.5)"
    )
    absent = v.gap_closed(y, scratch, teacher, teacher)
    assert v.describe_gap(absent) == (
        "there is no teacher-scratch gap to close (teacher 98.0% vs scratch 100.0%)"
    )


def test_gap_resamples_without_a_gap_are_counted_not_inf():
    # 6 discordant pairs, all the teacher's: p = 2 / 64, but about e^-6 of resamples draw none.
    n = 100
    y = torch.zeros(n, dtype=torch.long)
    teacher = logits_for(y, torch.ones(n, dtype=torch.bool))
    scratch = logits_for(y, torch.arange(n) >= 6)
    kd = logits_for(y, torch.arange(n) >= 3)
    out = v.gap_closed(y, teacher, scratch, kd, resamples=10_000)
    assert out["measurable"] and out["value"] == pytest.approx(0.5)
    assert 5 < out["resamples_dropped"] < 80
    assert all(math.isfinite(x) for x in out["ci95"])
    assert f"; {out['resamples_dropped']} resamples without a gap left out)" in v.describe_gap(out)


def test_mean_interval_by_hand():
    out = v.mean_interval([0.90, 0.92, 0.97])
    std = math.sqrt((0.03**2 + 0.01**2 + 0.04**2) / 2)
    half = T_975_DF2 * std / math.sqrt(3)
    assert out["n"] == 3 and out["mean"] == pytest.approx(0.93)
    assert out["std"] == pytest.approx(std)
    assert out["ci95"] == pytest.approx([0.93 - half, 0.93 + half], abs=1e-6)
    assert v.mean_interval([0.5]) == {"mean": 0.5, "std": None, "ci95": None, "n": 1}
    assert v.mean_interval([0.5, 0.5])["ci95"] == [0.5, 0.5]


def test_across_seeds_follows_nesting():
    seeds = [
        {"dataset": {"name": "mnist5k"}, "models": {"kd": {"accuracy": x, "fidelity": f}}}
        for x, f in ((0.90, 0.9), (0.92, 0.8), (0.97, None))
    ]
    out = v.across_seeds(seeds)
    assert set(out) == {"models"}
    assert out["models"]["kd"]["accuracy"] == v.mean_interval([0.90, 0.92, 0.97])
    assert out["models"]["kd"]["fidelity"]["n"] == 2


def comparison(a_only: int, b_only: int, diff: float, conclusion: str, ece: float = 0.01) -> dict:
    return {
        "accuracy_difference": diff, "ci95": [diff - 0.01, diff + 0.01], "p_value": 0.5,
        "test": "mcnemar", "conclusion": conclusion, "nll_difference": -diff,
        "nll_ci95": [-diff - 0.1, -diff + 0.1], "ece_difference": ece, "ece_ci95": [ece - 0.01, ece + 0.01],
        "a_only_correct": a_only, "b_only_correct": b_only, "n": 1000,
    }  # fmt: skip


def test_verdict_across_seeds_pools_discordant_pairs():
    per_seed = [
        comparison(4, 0, 0.004, "no significant difference"),
        comparison(3, 0, 0.003, "no significant difference"),
        comparison(3, 0, 0.005, "helped"),
    ]
    out = v.verdict_across_seeds(per_seed)
    assert out["p_value"] == pytest.approx(2 * 0.5**10) and out["conclusion"] == "helped"
    assert (out["a_only_correct"], out["b_only_correct"], out["n"], out["seeds"]) == (
        10, 0, 3000, 3
    )  # fmt: skip
    assert (out["seeds_helped"], out["seeds_hurt"]) == (1, 0)
    summary = v.mean_interval([0.004, 0.003, 0.005])
    assert out["accuracy_difference"] == summary["mean"] and out["ci95"] == summary["ci95"]
    assert out["interval"] == "t over seeds"
    one = v.verdict_across_seeds(per_seed[:1])
    assert one["ci95"] == per_seed[0]["ci95"] and one["interval"] == "bootstrap over test examples"
    json.dumps(out, allow_nan=False)


def test_sign_flip_test_by_hand_and_equal_to_mcnemar_on_disjoint_splits():
    # One example ahead by 1 and one by 2: W = B1 + 2 B2 is 0, 1, 2, 3 with 1/4 each; observed 3.
    assert v.sign_flip_test([1, 1], [0, 0]) == pytest.approx(0.5)
    assert v.sign_flip_test([0, 3], [0, 0]) == pytest.approx(0.25)  # as Bin(3, 1/2), doubled
    assert v.sign_flip_test([], []) == 1.0
    for a, b in ((10, 0), (6, 2), (3, 9), (40, 25), (5, 5)):
        assert v.sign_flip_test([a], [b]) == pytest.approx(stats.binomtest(a, a + b).pvalue)


def test_shared_test_examples_are_not_counted_as_new_evidence():
    # Three seeds on the same 20 test examples; a beats b on the same 4 examples every time.
    y = torch.zeros(20, dtype=torch.long)
    a = logits_for(y, torch.ones(20, dtype=torch.bool))
    b = logits_for(y, torch.arange(20) >= 4)
    ids = [torch.arange(20)] * 3
    wins = v.net_wins(ids, [y] * 3, [a] * 3, [b] * 3)
    assert wins["a_ahead"] == [0, 0, 4] and wins["b_ahead"] == [0, 0, 0]
    assert (wins["examples"], wins["examples_in_several_seeds"]) == (20, 20)
    per_seed = [v.compare(y, a, b, resamples=100)] * 3
    pooled = v.verdict_across_seeds(per_seed)
    assert pooled["p_value"] == pytest.approx(2 * 0.5**12) and pooled["conclusion"] == "helped"
    honest = v.verdict_across_seeds(per_seed, example_wins=wins)
    assert honest["p_value"] == pytest.approx(2 * 0.5**4)
    assert honest["conclusion"] == "no significant difference"
    assert honest["test"] == "sign-flip over examples, pooled over seeds"


def test_net_wins_on_partly_shared_splits():
    y = torch.zeros(3, dtype=torch.long)
    right, wrong = torch.ones(3, dtype=torch.bool), torch.zeros(3, dtype=torch.bool)
    a = [logits_for(y, right), logits_for(y, torch.tensor([True, False, True]))]
    b = [logits_for(y, wrong), logits_for(y, right)]
    # Seed 0 tests examples 0, 1, 2 (a ahead on all); seed 1 tests 2, 3, 4 (b ahead on 3).
    wins = v.net_wins([[0, 1, 2], [2, 3, 4]], [y, y], a, b)
    # Net: example 0 +1, 1 +1, 2 +1 + 0, 3 -1, 4 0.
    assert wins == {
        "a_ahead": [3], "b_ahead": [1], "examples": 5, "examples_in_several_seeds": 1,
    }  # fmt: skip


def test_format_p():
    assert v.format_p(0.0004) == "p < 0.001"
    assert v.format_p(2 * 0.5**10) == "p = 0.002"
    assert v.format_p(0.01) == "p = 0.01"
    assert v.format_p(0.0496) == "p = 0.0496"  # not "0.05" for a significant result
    assert v.format_p(0.0504) == "p = 0.0504"
    assert v.format_p(0.4512) == "p = 0.45"
    assert v.format_p(1.0) == "p = 1"


def test_describe_lines():
    verdict = {
        "accuracy_difference": 0.012, "ci95": [0.003, 0.021], "p_value": 0.01,
        "conclusion": "helped", "ece_difference": 0.013, "ece_ci95": [0.004, 0.020],
    }  # fmt: skip
    line = v.describe(verdict, name="distillation", twin="scratch", ece=(0.042, 0.029))
    assert line == (
        "distillation helped: +1.2 points over scratch (95% CI +0.3 to +2.1, p = 0.01; 1 seed); "
        "calibration: ECE 0.042 vs 0.029 (worse, 95% CI of the difference +0.004 to +0.020)"
    )
    assert "\x1b" not in line and "\n" not in line
    hurt = {**verdict, "accuracy_difference": -0.015, "ci95": [-0.025, -0.005], "p_value": 0.0001}
    hurt.update(conclusion="hurt", ece_difference=-0.01, ece_ci95=[-0.02, 0.001])
    assert v.describe(hurt, name="kd", twin="scratch", seeds=3) == (
        "kd hurt: -1.5 points against scratch (95% CI -2.5 to -0.5, p < 0.001; 3 seeds); "
        "calibration: ECE difference -0.010 (no clear difference, 95% CI of the difference "
        "-0.020 to +0.001)"
    )
    none = {**verdict, "conclusion": "no significant difference", "p_value": 0.45}
    none.update(ci95=[-0.005, 0.011], accuracy_difference=0.003, ece_ci95=[-0.03, -0.01])
    assert v.describe(none, name="kd", twin="scratch", ece=(0.01, 0.03)) == (
        "kd: no significant difference from scratch, +0.3 points (95% CI -0.5 to +1.1, p = 0.45; "
        "1 seed); calibration: ECE 0.010 vs 0.030 (better, 95% CI of the difference -0.030 to -0.010)"
    )


def test_describe_across_seeds():
    per_seed = [comparison(4, 0, 0.004, "helped", 0.01), comparison(3, 0, 0.002, "hurt", 0.03)]
    out = v.verdict_across_seeds(per_seed)
    # t-intervals with 1 degree of freedom (t = 12.706): 0.3 +- 1.27 points, ECE 0.020 +- 0.127.
    assert v.describe(out, name="kd", twin="scratch") == (
        "kd helped: +0.3 points over scratch (95% CI over seeds -1.0 to +1.6, p = 0.016; 2 seeds, "
        "helped on 1, hurt on 1); calibration: ECE difference +0.020 (no clear difference, "
        "95% CI of the difference -0.107 to +0.147)"
    )
    assert "spread unknown" in v.describe(
        {**per_seed[0], "ece_ci95": None}, name="kd", twin="scratch"
    )


def test_thread_count_is_restored():
    threads = torch.get_num_threads()
    y, a, b = random_models(30)
    v.compare(y, a, b, resamples=10)
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError):
        v.compare(y, a[:3], b)
    assert torch.get_num_threads() == threads
