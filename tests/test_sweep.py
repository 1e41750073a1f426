"""``kdlens sweep`` on Optuna: one teacher per seed, outputs, resuming, workers, killed workers."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kdlens.errors import ConfigError
from kdlens.search import run_sweep
from tests.conftest import CORE_ONLY, REPO, SMOKE

pytest.importorskip("optuna")

FAST = [
    "teacher.train.epochs=1",
    "teacher.train.max_batches=2",
    "student.train.epochs=1",
    "student.train.max_batches=2",
    *CORE_ONLY,
]


def _trials(out, study=None):
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    return optuna.load_study(study_name=study or out.name, storage=storage).trials


def test_a_bad_cell_fails_before_anything_trains(tmp_path):
    with pytest.raises(ConfigError, match="distill.alpha"):
        run_sweep(SMOKE, {"distill.alpha": [0.1, 7]}, 1, tmp_path / "s", FAST)
    with pytest.raises(ConfigError, match="model 'mlp' has no argument 'hiden'"):
        run_sweep(SMOKE, {"student.model_args.hiden": [8]}, 1, tmp_path / "s", FAST)
    assert not (tmp_path / "s").exists()


def test_sweep_reuses_one_teacher_and_resumes_without_rerunning(tmp_path, monkeypatch):
    import kdlens.pipeline as pipeline

    out = tmp_path / "s"
    grid = {"distill.method": ["kd", "dkd"]}
    document = run_sweep(SMOKE, grid, 1, out, FAST)
    assert len(document["cells"]) == 2 and document["unfinished"] == 0
    teachers = list((out / "teachers").glob("*/checkpoints/teacher.safetensors"))
    assert len(teachers) == 1  # trained once for the seed, loaded by both cells
    for cell in document["cells"]:
        run_dir = out / cell["runs"][0]["dir"]
        assert run_dir.parent == out / "trials"
        assert str(teachers[0].resolve()) in (run_dir / "config.yaml").read_text()
        assert 0 <= cell["kd"]["accuracy"]["mean"] <= 1
        assert cell["scratch"]["accuracy"]["values"] and cell["teacher"]["accuracy"]["values"]
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["distill.method"] for r in rows] == ["kd", "dkd"]
    assert {"seeds", "accuracy_mean", "accuracy_std", "fidelity_mean", "fidelity_std"} <= set(
        rows[0]
    )
    assert {"scratch_accuracy_mean", "teacher_accuracy_mean"} <= set(rows[0])
    assert (out / "sweep.png").stat().st_size > 0
    assert json.loads((out / "sweep.json").read_text())["grid"] == grid

    # Rerun: everything is read from the study, nothing trains again.
    calls = []
    real_run = pipeline.run
    monkeypatch.setattr(
        pipeline,
        "run",
        lambda config, out_dir, **kw: calls.append(out_dir) or real_run(config, out_dir, **kw),
    )
    again = run_sweep(SMOKE, grid, 1, out, FAST)
    assert calls == []
    assert again["cells"] == document["cells"]
    # A rerun with another grid is refused, and changes nothing.
    journal = (out / "optuna.journal").read_bytes()
    with pytest.raises(ConfigError, match="created with another space"):
        run_sweep(SMOKE, {"distill.method": ["kd", "rkd"]}, 1, out, FAST)
    assert (out / "optuna.journal").read_bytes() == journal


def test_cli_sweep_names_the_model_of_its_table(tmp_path, capsys):
    from kdlens.cli import main

    out = tmp_path / "s"
    args = ["sweep", str(SMOKE), "--grid", "distill.alpha=0.2", "--seeds", "1", "--out", str(out)]
    for f in FAST:
        args += ["--set", f]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "kd accuracy" in printed and "kd fidelity" in printed and "±" in printed
    assert "sweep.csv" in printed
    assert len(json.loads((out / "sweep.json").read_text())["cells"][0]["runs"]) == 1
    assert main(["sweep", str(SMOKE), "--grid", "distill.alpah=1", "--out", str(out)]) == 2
    assert "did you mean 'distill.alpha'" in capsys.readouterr().err


def test_two_workers_run_a_2x2_grid_with_no_trial_twice(tmp_path):
    out = tmp_path / "s"
    grid = {"distill.method": ["kd", "dkd"], "distill.alpha": [0.1, 0.5]}
    slower = [*FAST, "student.train.epochs=3", "student.train.max_batches=4"]
    document = run_sweep(SMOKE, grid, 1, out, slower, workers=2)
    trials = _trials(out)
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    cells = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(cells)) == 4  # each cell once
    assert sorted(p.name for p in (out / "trials").iterdir()) == ["0", "1", "2", "3"]
    assert [len(c["runs"]) for c in document["cells"]] == [1, 1, 1, 1]
    assert len(list((out / "teachers").glob("*/checkpoints/teacher.safetensors"))) == 1
    workers = {t.user_attrs["kdlens.worker"] for t in trials}
    assert 1 <= len(workers) <= 2  # which of the two took how many depends on the machine's load


def _sweep_command(out):
    args = [sys.executable, "-m", "kdlens", "sweep", str(SMOKE), "--grid", "distill.alpha=0.1,0.5"]
    args += ["--seeds", "1", "--out", str(out), "--quiet"]
    for f in [*FAST, "student.train.epochs=60", "student.train.max_batches=8"]:
        args += ["--set", f]
    return args


def test_a_worker_killed_mid_trial_leaves_a_study_a_rerun_completes(tmp_path):
    out = tmp_path / "s"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    log = tmp_path / "first.log"  # a file, not a pipe nobody reads while it runs
    proc = subprocess.Popen(
        _sweep_command(out), env=env, stderr=open(log, "w"), start_new_session=True
    )
    state = out / "trials" / "0" / "checkpoints"
    deadline = time.monotonic() + 300
    while not list(state.glob("*.state.pt")):
        assert proc.poll() is None, log.read_text()[-2000:]
        assert time.monotonic() < deadline, "the first trial never saved an epoch"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-trial: no chance to clean up
    proc.wait()
    assert [t.state.name for t in _trials(out)][0] == "RUNNING"

    res = subprocess.run(_sweep_command(out), env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "queued again" in res.stderr
    trials = _trials(out)
    states = {t.number: t.state.name for t in trials}
    assert states[0] == "FAIL" and trials[2].user_attrs["kdlens.retry_of"] == 0
    complete = [t.params["distill.alpha"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(complete) == [0.1, 0.5]  # each cell exactly once
    document = json.loads((out / "sweep.json").read_text())
    assert [len(c["runs"]) for c in document["cells"]] == [1, 1] and document["unfinished"] == 0
