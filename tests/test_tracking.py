"""MLflow tracking of runs and searches, against a local file store."""

import sys

import pytest

from kdlens.errors import KdlensError
from kdlens.run import RunFolder
from kdlens.tracking import MlflowTracker, create_tracker, final_values, flatten
from tests.conftest import CORE_ONLY, SMOKE

mlflow = pytest.importorskip("mlflow")

FAST = [
    "teacher.train.epochs=2",
    "teacher.train.max_batches=2",
    "student.train.epochs=2",
    "student.train.max_batches=2",
    *CORE_ONLY,
]


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri, experiment):
    client = _client(uri)
    found = client.get_experiment_by_name(experiment)
    return client, client.search_runs([found.experiment_id]) if found else []


def test_flatten_and_final_values():
    assert flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}
    metrics = {
        "models": {"kd": {"accuracy": 0.9, "role": "student", "params": 10}},
        "summary": {"gap_closed": None, "verdicts": {"kd": {"conclusion": "helped", "p": 0.01}}},
        "timings": {"total": 3.0},
    }
    numbers, words = final_values(metrics)
    assert numbers == {
        "test.kd.accuracy": 0.9,
        "test.kd.params": 10.0,
        "summary.verdicts.kd.p": 0.01,
    }
    assert words == {"test.kd.role": "student", "summary.verdicts.kd.conclusion": "helped"}


def test_cli_run_logs_config_epochs_final_metrics_and_artifacts(tmp_path):
    from kdlens.cli import main

    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "r"
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    args += ["--tracking", "mlflow", "--tracking-uri", uri]
    for f in FAST:
        args += ["--set", f]
    assert main(args) == 0
    client, runs = _runs(uri, "kdlens")
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "r"
    assert run.data.params["distill.temperature"] == "4.0"
    assert run.data.params["student.model_args.hidden"] == "[32]"
    history = client.get_metric_history(run.info.run_id, "kd.val_accuracy")
    assert [m.step for m in history] == [1, 2]
    metrics = __import__("json").loads((out / "metrics.json").read_text())
    assert run.data.metrics["test.kd.accuracy"] == pytest.approx(
        metrics["models"]["kd"]["accuracy"]
    )
    assert "summary.kd_minus_scratch" in run.data.metrics
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert "metrics.json" in artifacts


def test_cli_run_with_seeds_logs_one_run_per_seed(tmp_path):
    from kdlens.cli import main

    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "s"
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet", "--seeds", "2"]
    args += ["--tracking", "mlflow", "--tracking-uri", uri]
    for f in FAST:
        args += ["--set", f]
    assert main(args) == 0
    _, runs = _runs(uri, "kdlens")
    assert sorted(r.info.run_name for r in runs) == ["s/seed-0", "s/seed-1"]
    assert {r.data.params["seed"] for r in runs} == {"0", "1"}
    assert all(r.info.status == "FINISHED" for r in runs)


def test_report_is_an_artifact_and_a_stopped_run_is_marked(tmp_path):
    uri = (tmp_path / "mlruns").as_uri()
    folder = RunFolder(tmp_path / "r")
    folder.path.mkdir()
    folder.report.write_text("<html>report</html>")
    folder.metrics.write_text("{}")
    from kdlens.config import load_config

    tracker = MlflowTracker(uri, "e", tags={"kdlens.trial": "3"})
    tracker.start(load_config(SMOKE), folder)
    tracker("kd", {"epoch": 1, "val_accuracy": 0.5, "loss": float("nan")})  # NaN is left out
    tracker.finish({"models": {"kd": {"accuracy": 0.75}}, "summary": {}}, folder)
    client, runs = _runs(uri, "e")
    assert {a.path for a in client.list_artifacts(runs[0].info.run_id)} == {
        "metrics.json",
        "report.html",
    }
    assert runs[0].data.tags["kdlens.trial"] == "3" and "kd.loss" not in runs[0].data.metrics

    stopped = MlflowTracker(uri, "e")
    stopped.start(load_config(SMOKE), folder)
    stopped.stop(KeyboardInterrupt())
    failed = MlflowTracker(uri, "e")
    failed.start(load_config(SMOKE), folder)
    failed.stop(ValueError("x"))
    statuses = sorted(r.info.status for r in _runs(uri, "e")[1])
    assert statuses == ["FAILED", "FINISHED", "KILLED"]


def test_tune_logs_each_trial_and_the_best_config_runs(tmp_path):
    from kdlens.search import parse_space
    from kdlens.search.tune import run_tune

    pytest.importorskip("optuna")
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "study"
    space = parse_space(["distill.alpha=float:0:1"])
    run_tune(SMOKE, space, 2, out, FAST, seeds=1, tracking="mlflow", tracking_uri=uri)
    _, runs = _runs(uri, "study")
    trials = sorted(r.data.tags["kdlens.trial"] for r in runs if "kdlens.trial" in r.data.tags)
    assert trials == ["0", "1"]
    best = [r for r in runs if "kdlens.best_seed" in r.data.tags]
    assert len(best) == 1 and "test.kd.accuracy" in best[0].data.metrics
    for r in runs:
        assert "distill.alpha" in r.data.params


def test_missing_mlflow_is_one_line_with_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)
    tracker = create_tracker("mlflow", (tmp_path / "m").as_uri())
    with pytest.raises(KdlensError, match=r"pip install 'kdlens\[mlflow\]'"):
        tracker.client()
