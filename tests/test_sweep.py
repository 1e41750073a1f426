"""``kdlens sweep``: grid parsing, one teacher per seed, outputs, and resuming."""

import csv
import json

import pytest

from kdlens.errors import ConfigError
from kdlens.sweep import grid_cells, parse_grid, run_sweep
from tests.conftest import SMOKE

FAST = [
    "teacher.train.epochs=1",
    "teacher.train.max_batches=2",
    "student.train.epochs=1",
    "student.train.max_batches=2",
]


def test_parse_grid_reads_yaml_values_and_rejects_bad_keys():
    grid = parse_grid(["distill.method=kd,dkd", "distill.alpha=0, 0.5"])
    assert grid == {"distill.method": ["kd", "dkd"], "distill.alpha": [0, 0.5]}
    assert grid_cells(grid)[1] == {"distill.method": "kd", "distill.alpha": 0.5}
    assert len(grid_cells(grid)) == 4
    for bad, message in [
        (["seed=1,2"], "--seeds"),
        (["distill.alpha"], "KEY=v1"),
        (["a=1", "a=2"], "twice"),
        ([], "at least one"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)


def test_a_bad_cell_fails_before_anything_trains(tmp_path):
    with pytest.raises(ConfigError, match="distill.alpha"):
        run_sweep(SMOKE, {"distill.alpha": [0.1, 7]}, 1, tmp_path / "s", FAST)
    assert not (tmp_path / "s").exists()


def test_sweep_reuses_one_teacher_and_resumes_without_rerunning(tmp_path, monkeypatch):
    import kdlens.pipeline as pipeline

    out = tmp_path / "s"
    grid = {"distill.method": ["kd", "dkd"]}
    document = run_sweep(SMOKE, grid, 1, out, FAST)
    assert len(document["cells"]) == 2
    teachers = list((out / "teachers").glob("*/checkpoints/teacher.safetensors"))
    assert len(teachers) == 1  # trained once for the seed, loaded by both cells
    for cell in document["cells"]:
        config = (out / cell["runs"][0]["dir"] / "config.yaml").read_text()
        assert str(teachers[0].resolve()) in config
        assert 0 <= cell["kd"]["accuracy"]["mean"] <= 1
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["distill.method"] for r in rows] == ["kd", "dkd"]
    assert {"accuracy_mean", "accuracy_std", "fidelity_mean", "fidelity_std"} <= set(rows[0])
    assert (out / "sweep.png").stat().st_size > 0
    assert json.loads((out / "sweep.json").read_text())["grid"] == grid

    # Interrupted during the second cell: its metrics.json was never written.
    finished = out / document["cells"][0]["runs"][0]["dir"] / "metrics.json"
    unfinished = out / document["cells"][1]["runs"][0]["dir"] / "metrics.json"
    unfinished.unlink()
    stamp, teacher_stamp = finished.stat().st_mtime_ns, teachers[0].stat().st_mtime_ns
    calls = []
    real_run = pipeline.run
    monkeypatch.setattr(
        pipeline,
        "run",
        lambda config, out_dir, **kw: calls.append(out_dir) or real_run(config, out_dir, **kw),
    )
    again = run_sweep(SMOKE, grid, 1, out, FAST)
    assert calls == [unfinished.parent]  # only the unfinished cell ran
    assert finished.stat().st_mtime_ns == stamp
    assert teachers[0].stat().st_mtime_ns == teacher_stamp
    assert again["cells"][0] == document["cells"][0]


def test_cli_sweep(tmp_path, capsys):
    from kdlens.cli import main

    out = tmp_path / "s"
    args = ["sweep", str(SMOKE), "--grid", "distill.alpha=0.2", "--seeds", "1", "--out", str(out)]
    for f in FAST:
        args += ["--set", f]
    assert main([*args, "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "±" in printed and "sweep.csv" in printed and "kd accuracy" in printed
    assert len(json.loads((out / "sweep.json").read_text())["cells"][0]["runs"]) == 1
    assert main(["sweep", str(SMOKE), "--grid", "distill.alpah=1", "--out", str(out)]) == 2
