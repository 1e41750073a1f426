"""``kdlens tune``: trials, pruning, best.yaml, the re-run over seeds, tune.html, bad input."""

import csv
import json
import os

import pytest

from kdlens.errors import ConfigError
from kdlens.search import parse_space
from kdlens.search.tune import run_tune
from tests.conftest import CORE_ONLY, SMOKE

optuna = pytest.importorskip("optuna")

FAST = [
    "teacher.train.epochs=1",
    "teacher.train.max_batches=2",
    "student.train.epochs=3",
    "student.train.max_batches=3",
    *CORE_ONLY,
]
SPACE = ["distill.temperature=log:1:8", "distill.alpha=float:0:1"]


def _history_best(run_dir):
    history = json.loads((run_dir / "history_kd.json").read_text())
    return max(r["val_accuracy"] for r in history)


def test_tune_writes_trials_best_yaml_a_page_and_reruns_the_best(tmp_path, capsys):
    from kdlens.cli import main

    out = tmp_path / "t"
    document = run_tune(SMOKE, parse_space(SPACE), 5, out, FAST, seeds=1)
    assert sum(document["trials"].values()) == 5
    table = json.loads((out / "trials.json").read_text())
    assert table["objective"] == {"model": "kd", "metric": "val_accuracy", "direction": "maximize"}
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 5 and {"kd_val_accuracy", "distill.temperature", "distill.alpha"} <= set(
        rows[0]
    )
    for t in table["trials"]:
        run = out / t["folder"]
        assert t["epochs"] == len(t["intermediate"]) and t["state"] in ("COMPLETE", "PRUNED")
        assert not (run / "history_scratch.json").exists()  # the distilled student only
        if t["state"] == "PRUNED":  # stopped: an interrupted run folder
            assert not (run / "metrics.json").exists() and t["epochs"] < 3
        else:  # and never evaluated on the test split
            assert json.loads((run / "metrics.json").read_text())["models"] == {}
    best = document["best"]
    assert best["value"] == max(t["value"] for t in table["trials"] if t["state"] == "COMPLETE")
    assert best["value"] == pytest.approx(_history_best(out / best["folder"]))

    # best.yaml runs as is and gives the best trial's validation accuracy again.
    assert main(["run", "--config", str(out / "best.yaml"), "--out", str(tmp_path / "b")]) == 0
    assert _history_best(tmp_path / "b") == best["value"]

    final = document["final"]
    assert final["seeds"] == [0] and final["runs"][0]["dir"] == "best/seed_0"
    metrics = json.loads((out / "best" / "seed_0" / "metrics.json").read_text())
    assert final["runs"][0]["kd_minus_scratch"] == metrics["summary"]["kd_minus_scratch"]
    assert "kd - scratch test accuracy" in final["verdict"]
    assert json.loads((out / "tune.json").read_text())["best"] == best

    page = (out / "tune.html").read_text()
    assert "Plotly.newPlot" in page and "<script src=" not in page  # plotly.js is embedded
    for title in ("Optimisation history", "Parameter importances", "over each pair"):
        assert title in page


def test_a_pruned_trial_leaves_an_interrupted_run_that_resumes(tmp_path):
    from kdlens.config import load_config
    from kdlens.pipeline import resume_run, run
    from kdlens.run import RunFolder

    seen = []

    def prune_after_first_kd_epoch(name, record):
        seen.append(name)
        if name == "kd":
            raise optuna.TrialPruned("pruned")

    out = tmp_path / "r"
    config = load_config(SMOKE, FAST)
    with pytest.raises(optuna.TrialPruned):
        run(config, out, on_epoch=prune_after_first_kd_epoch, twins=False)
    assert "scratch" not in seen and seen.count("kd") == 1
    folder = RunFolder(out)
    assert folder.is_run() and not folder.metrics.exists()
    assert folder.state("kd").is_file()  # the epoch before the stop is saved
    with folder.locked():  # the lock was released
        pass
    metrics = resume_run(out)
    assert "kd" in metrics["models"]


def test_reporter_reports_the_best_so_far_and_prunes():
    from kdlens.search.trial import Reporter

    class FakeTrial:
        def __init__(self, prune_at):
            self.reports, self.prune_at = [], prune_at

        def report(self, value, step):
            self.reports.append((step, value))

        def should_prune(self):
            return len(self.reports) >= self.prune_at

    trial = FakeTrial(prune_at=3)
    reporter = Reporter(trial, "val_accuracy", prune=True)
    reporter("teacher", {"epoch": 1, "val_accuracy": 0.9, "val_nll": 0.1})  # not the student
    reporter("kd", {"epoch": 1, "val_accuracy": 0.5, "val_nll": 1.0})
    reporter("kd", {"epoch": 2, "val_accuracy": 0.4, "val_nll": 0.5})
    with pytest.raises(optuna.TrialPruned):
        reporter("kd", {"epoch": 3, "val_accuracy": 0.6, "val_nll": 0.9})
    assert trial.reports == [(1, 0.5), (2, 0.5), (3, 0.6)]
    assert reporter.epochs == 3
    nll = Reporter(FakeTrial(prune_at=9), "val_nll", prune=False)
    nll("kd", {"epoch": 1, "val_accuracy": 0.5, "val_nll": 1.0})
    nll("kd", {"epoch": 2, "val_accuracy": 0.5, "val_nll": 0.7})
    assert nll.trial.reports == [(1, 1.0), (2, 0.7)]  # the NLL of the kept epoch


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--space", "distill.alpah=float:0:1"], "did you mean 'distill.alpha'"),
        (["--space", "distill.alpha=uniform:0:1"], "unknown kind 'uniform'"),
        (["--space", "distill.method=choice:"], "choice needs at least one value"),
        (["--space", "distill.temperature=log:0:4"], "a log scale needs bounds above 0"),
        (["--space", "distill.alpha=float:0:1", "--trials", "0"], "--trials must be at least 1"),
        (["--space", "distill.alpha=float:0:1", "--objective", "accuracy"], "test split"),
        (["--space", "distill.alpha=float:0:1", "--storage", "redis://h"], "expected a database"),
        (
            ["--space", "distill.alpha=float:0:1", "--storage", "sqlite:////no/such/dir/s.db"],
            "cannot reach the storage sqlite:////no/such/dir/s.db",
        ),
        (
            ["--space", "distill.alpha=float:0:1", "--storage", "postgresql://u:pw@127.0.0.1:1/d"],
            r"postgresql://u:\*\*\*@127.0.0.1:1/d(: no database driver| \(.*refused)",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, extra, message):
    import re

    from kdlens.cli import main

    out = tmp_path / "t"
    args = ["tune", str(SMOKE), "--out", str(out), *extra]
    if "--trials" not in extra:
        args += ["--trials", "2"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("kdlens: error: ")
    assert re.search(message, err), err
    assert "pw" not in err  # a password in the URL is never printed
    assert not out.exists()


def test_a_rerun_extends_a_study_and_another_space_is_refused(tmp_path, monkeypatch):
    import kdlens.pipeline as pipeline

    out = tmp_path / "t"
    run_tune(SMOKE, parse_space(SPACE), 2, out, FAST, seeds=0, pruner="none")
    assert not (out / "best").exists()  # --seeds 0: no re-run
    calls = []
    real_run = pipeline.run
    monkeypatch.setattr(pipeline, "run", lambda c, o, **kw: calls.append(o) or real_run(c, o, **kw))
    document = run_tune(SMOKE, parse_space(SPACE), 3, out, FAST, seeds=0, pruner="none")
    assert document["trials"] == {"COMPLETE": 3} and calls == [out.resolve() / "trials" / "2"]

    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    with pytest.raises(ConfigError, match="another space .*distill.alpha"):
        run_tune(SMOKE, parse_space(SPACE[:1]), 3, out, FAST, seeds=0)
    with pytest.raises(ConfigError, match="another config .*student.train.epochs: 3 then, 2 now"):
        run_tune(SMOKE, parse_space(SPACE), 3, out, [*FAST, "student.train.epochs=2"], seeds=0)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    assert os.path.getsize(out / "optuna.journal") > 0


@pytest.mark.slow
def test_torchrun_inside_each_trial(tmp_path):
    """Two processes train every trial together; rank 0 alone talks to the study."""
    import subprocess
    import sys

    from tests.conftest import REPO

    out = tmp_path / "t"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "kdlens", "tune", str(SMOKE), "--space", "distill.alpha=float:0:1"]
    cmd += ["--trials", "5", "--seeds", "1", "--out", str(out), "--quiet"]
    for f in FAST:
        cmd += ["--set", f]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.count("tune folder:") == 1  # only rank 0 reports
    table = json.loads((out / "trials.json").read_text())
    assert len(table["trials"]) == 5
    for t in table["trials"]:
        run = json.loads((out / t["folder"] / ".kdlens-run.json").read_text())
        assert run["config"]["distill"]["alpha"] == pytest.approx(t["params"]["distill.alpha"])
    metrics = json.loads((out / "best" / "seed_0" / "metrics.json").read_text())
    assert metrics["environment"]["world_size"] == 2
