"""Verdicts inside a run: every model with a twin, the words the CLI prints, several seeds."""

import contextlib
import io
import json
import shutil

import pytest
import torch
import yaml

from kdlens.cli import main
from kdlens.evaluate.verdicts import HELPED, HURT, NO_DIFFERENCE, Resampler
from kdlens.report.words import size_line, verdict_lines
from kdlens.run import ModelRecord
from kdlens.stages.verdicts import run_verdicts
from tests.conftest import CORE_ONLY, SMOKE

VERDICT_KEYS = {
    "vs",
    "accuracy_difference",
    "ci95",
    "p_value",
    "test",
    "conclusion",
    "nll_difference",
    "nll_ci95",
    "ece_difference",
    "ece_ci95",
}
CORE = ["--config", str(SMOKE), "--quiet", *sum((["--set", s] for s in CORE_ONLY), [])]


def _cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


# -- one run --------------------------------------------------------------------------------------


def test_smoke_run_judges_every_model_with_a_twin(smoke_run):
    out, metrics = smoke_run
    summary = metrics["summary"]
    verdicts = summary["verdicts"]
    records = json.loads((out / "models.json").read_text())
    with_twin = {n: r["twin"] for n, r in records.items() if r["twin"] is not None}
    # The distilled student, each readable _kd and each deployed model: all judged, by record.
    assert {"kd", "soft_tree_kd", "tree_kd", "kd_int8"} <= set(with_twin)
    assert {n: v["vs"] for n, v in verdicts.items()} == with_twin
    for name, v in verdicts.items():
        assert VERDICT_KEYS <= set(v), name
        assert v["test"] == "mcnemar" and v["conclusion"] in (HELPED, HURT, NO_DIFFERENCE)
        lo, hi = v["ci95"]
        assert lo <= hi and v["n"] == metrics["dataset"]["n_test"]
        a, b = metrics["models"][name], metrics["models"][v["vs"]]
        assert v["accuracy_difference"] == pytest.approx(a["accuracy"] - b["accuracy"], abs=1e-6)
        assert v["ece_difference"] == pytest.approx(a["ece"] - b["ece"], abs=1e-6)
    gap = summary["gap_closed"]
    assert {"value", "ci95", "measurable", "gap", "gap_p_value"} <= set(gap)
    assert summary["kd_minus_scratch"] == pytest.approx(verdicts["kd"]["accuracy_difference"])
    assert summary["bootstrap"]["resamples"] == 10_000
    assert (out / "test_logits.safetensors").is_file()
    assert "verdicts" in metrics["timings"]
    page = (out / "report.html").read_text()
    for column in ("difference (95% CI)", "conclusion", "calibration: ECE"):
        assert column in page


def _logits(y, right, classes=3):
    """Logits that predict y where ``right`` and the next class elsewhere."""
    predicted = torch.where(right, y, (y + 1) % classes)
    out = torch.zeros(len(y), classes)
    out[torch.arange(len(y)), predicted] = 3.0
    return out


def test_verdicts_pair_models_by_their_records_not_their_names():
    n = 200
    y = torch.arange(n) % 3
    half = torch.arange(n) < n // 2
    logits = {
        "big": _logits(y, torch.ones(n, dtype=torch.bool)),
        "baseline_x": _logits(y, half),  # a renamed hard-label twin
        "distilled_x": _logits(y, torch.arange(n) < 3 * n // 4),
        "kd": _logits(y, half),  # named like a student, but its record has no twin
        "worse": _logits(y, torch.arange(n) < n // 4),
        "same": _logits(y, half),
    }
    records = {
        "big": ModelRecord("big", role="teacher", family="cnn"),
        "baseline_x": ModelRecord(
            "baseline_x", role="student", family="mlp", trained_with="labels"
        ),
        "distilled_x": ModelRecord(
            "distilled_x", role="student", family="mlp", trained_with="teacher", twin="baseline_x"
        ),
        "kd": ModelRecord("kd", role="readable", family="tree", trained_with="labels"),
        "worse": ModelRecord("worse", role="deployed", family="mlp", twin="baseline_x"),
        "same": ModelRecord("same", role="deployed", family="mlp", twin="baseline_x"),
        "gone": ModelRecord("gone", role="deployed", family="mlp", twin="baseline_x"),  # no logits
    }
    out = run_verdicts(records, logits, y, Resampler(n, 500, 0))
    verdicts = out["verdicts"]
    assert set(verdicts) == {"distilled_x", "worse", "same"}
    assert verdicts["distilled_x"]["vs"] == "baseline_x"
    assert verdicts["distilled_x"]["conclusion"] == HELPED  # 50 examples right only there, 0 wrong
    assert verdicts["distilled_x"]["accuracy_difference"] == pytest.approx(0.25)
    assert verdicts["worse"]["conclusion"] == HURT
    assert verdicts["same"]["conclusion"] == NO_DIFFERENCE and verdicts["same"]["p_value"] == 1
    gap = out["gap_closed"]
    assert (gap["teacher_model"], gap["scratch_model"], gap["kd_model"]) == (
        "big",
        "baseline_x",
        "distilled_x",
    )
    assert gap["measurable"] and gap["value"] == pytest.approx(0.5)


def _verdict(diff, lo, hi, p, conclusion, ece_lo=0.004, ece_hi=0.02):
    return {
        "accuracy_difference": diff,
        "ci95": [lo, hi],
        "p_value": p,
        "conclusion": conclusion,
        "ece_difference": 0.013,
        "ece_ci95": [ece_lo, ece_hi],
    }


def test_the_verdict_lines_and_the_size_line_in_words():
    metrics = {
        "models": {
            "teacher": {"role": "teacher", "ece": 0.02},
            "scratch": {"role": "student", "trained_with": "labels", "ece": 0.029},
            "kd": {"role": "student", "trained_with": "teacher", "ece": 0.042},
            "soft_tree_kd": {"role": "readable", "trained_with": "teacher", "ece": 0.1},
            "soft_tree_scratch": {"role": "readable", "trained_with": "labels", "ece": 0.1},
        },
        "summary": {
            "verdicts": {
                "kd": {"vs": "scratch", **_verdict(0.012, 0.003, 0.021, 0.01, HELPED)},
                "soft_tree_kd": {
                    "vs": "soft_tree_scratch",
                    **_verdict(-0.004, -0.02, 0.01, 0.6, NO_DIFFERENCE, -0.01, 0.01),
                },
            },
            "gap_closed": {
                "measurable": False,
                "gap": 0.004,
                "gap_p_value": 0.4,
                "teacher_accuracy": 0.95,
                "scratch_accuracy": 0.946,
                "teacher_model": "teacher",
                "scratch_model": "scratch",
            },
            "teacher_vs_student": {"params": 4.2, "flops": 59.3, "latency_b1": 3.4},
        },
    }
    assert verdict_lines(metrics) == [
        "distillation helped: +1.2 points over scratch (95% CI +0.3 to +2.1, p = 0.01; 1 seed); "
        "calibration: ECE 0.042 vs 0.029 (worse, 95% CI of the difference +0.004 to +0.020)",
        "soft_tree_kd: no significant difference from soft_tree_scratch, -0.4 points (95% CI "
        "-2.0 to +1.0, p = 0.6; 1 seed); calibration: ECE 0.100 vs 0.100 (no clear difference, "
        "95% CI of the difference -0.010 to +0.010)",
        "the teacher-scratch gap is too small to measure (teacher 95.0% vs scratch 94.6%, p = 0.4)",
    ]
    assert size_line(metrics) == (
        "student (kd) vs teacher: 4.2x fewer parameters, 59x fewer FLOPs, 3.4x faster at batch 1"
    )
    metrics["summary"]["teacher_vs_student"] = {"params": 1 / 8.4, "flops": 2.0, "latency_b1": 0.5}
    assert size_line(metrics) == (
        "student (kd) vs teacher: 8.4x more parameters, 2.0x fewer FLOPs, 2.0x slower at batch 1"
    )


# -- several seeds --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("seeds") / "run"
    code, printed, err = _cli("run", *CORE, "--out", str(out), "--seeds", "2")
    assert code == 0, err
    return out, printed


def test_two_seeds_end_to_end(two_seeds):
    out, printed = two_seeds
    summary = json.loads((out / "summary.json").read_text())
    seeds = [json.loads((out / f"seed-{k}" / "metrics.json").read_text()) for k in (0, 1)]
    assert summary["seeds"] == [0, 1] and [r["dir"] for r in summary["runs"]] == [
        "seed-0",
        "seed-1",
    ]
    for k in (0, 1):  # seed k runs with the config's seed + k
        assert yaml.safe_load((out / f"seed-{k}" / "config.yaml").read_text())["seed"] == k
    assert not (out / "metrics.json").exists() and not (out / "checkpoints").exists()
    acc = summary["models"]["kd"]["accuracy"]
    values = [m["models"]["kd"]["accuracy"] for m in seeds]
    assert acc["n"] == 2 and acc["mean"] == pytest.approx(sum(values) / 2)
    assert acc["std"] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    assert acc["ci95"][0] < acc["mean"] < acc["ci95"][1]
    kd = summary["verdicts"]["kd"]
    assert kd["vs"] == "scratch"
    assert [{k: v for k, v in s.items() if k != "seed"} for s in kd["per_seed"]] == [
        m["summary"]["verdicts"]["kd"] for m in seeds
    ]
    across = kd["across_seeds"]
    assert across["seeds"] == 2 and across["test"].startswith("sign-flip")
    assert across["conclusion"] in (HELPED, HURT, NO_DIFFERENCE)
    assert kd["example_wins"]["examples"] > seeds[0]["dataset"]["n_test"]  # two test splits
    assert "kd_int8" not in summary["verdicts"]  # CORE_ONLY: nothing deployed
    page = (out / "report.html").read_text()
    assert page.index("Verdicts across seeds") < page.index("Each seed")
    assert "seed-0/" in page
    assert "2 seeds (0, 1)" in printed and "distillation" in printed and "2 seeds" in printed


def test_resume_of_a_multi_seed_run_reruns_only_the_unfinished_seed(two_seeds, tmp_path):
    src, _ = two_seeds
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    before = json.loads((out / "summary.json").read_text())
    (out / "seed-1" / "metrics.json").unlink()
    (out / "summary.json").unlink()
    seed0 = {p: p.stat().st_mtime_ns for p in (out / "seed-0").rglob("*") if p.is_file()}
    teacher1 = (out / "seed-1" / "checkpoints" / "teacher.safetensors").stat().st_mtime_ns
    code, printed, err = _cli("run", "--resume", str(out), "--quiet")
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in seed0} == seed0  # read, not rerun
    assert (out / "seed-1" / "metrics.json").is_file()
    assert (out / "seed-1" / "checkpoints" / "teacher.safetensors").stat().st_mtime_ns == teacher1
    after = json.loads((out / "summary.json").read_text())
    assert after["seeds"] == before["seeds"]
    assert after["models"]["kd"]["accuracy"] == before["models"]["kd"]["accuracy"]
    assert after["verdicts"]["kd"]["across_seeds"]["p_value"] == pytest.approx(
        before["verdicts"]["kd"]["across_seeds"]["p_value"]
    )
    assert "2 seeds (0, 1)" in printed


def test_a_multi_seed_folder_is_a_kdlens_folder(two_seeds, tmp_path):
    from kdlens.run import RunFolder

    src, _ = two_seeds
    folder = RunFolder(src)
    assert folder.is_run() and folder.is_seeds() and folder.seed_folder(1).kind() == "run"
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    code, _, err = _cli("run", *CORE, "--out", str(out), "--seeds", "2")
    assert code == 2 and "--overwrite" in err  # refused like a run folder
    code, _, err = _cli("report", str(out))
    assert code == 2 and "holds several seeds" in err and len(err.strip().splitlines()) == 1
    code, _, err = _cli("run", "--resume", str(out), "--seeds", "3")
    assert code == 2 and "drop --config/--out/--overwrite/--seeds" in err
    code, _, err = _cli("run", *CORE, "--out", str(tmp_path / "x"), "--seeds", "0")
    assert code == 2 and "--seeds must be at least 1" in err and not (tmp_path / "x").exists()
