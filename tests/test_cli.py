import json
import subprocess
import sys

import pytest
import torch

from kdlens.cli import main
from tests.conftest import SMOKE, decided_numbers

MODEL_KEYS = {"accuracy", "nll", "ece", "params", "train_seconds"}


def test_smoke_run_writes_the_run_folder(smoke_run):
    out, metrics = smoke_run
    for name in ("config.yaml", "split.json", "metrics.json", "normalization.json"):
        assert (out / name).is_file(), name
    for model in ("teacher", "scratch", "kd"):
        assert (out / "checkpoints" / f"{model}.safetensors").is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == metrics
    ds = on_disk["dataset"]
    assert ds["name"] == "digits" and ds["num_classes"] == 10
    assert ds["n_train"] + ds["n_val"] + ds["n_test"] == 1797
    models = on_disk["models"]
    assert {"teacher", "scratch", "kd"} <= set(models)
    for name, m in models.items():
        assert MODEL_KEYS <= set(m), name
        assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0
    for name in ("scratch", "kd"):
        assert {"fidelity", "kl_to_teacher"} <= set(models[name])
    assert models["scratch"]["params"] == models["kd"]["params"] < 1e6
    assert {"data", "teacher", "scratch", "kd", "evaluate", "total"} <= set(on_disk["timings"])
    assert on_disk["environment"]["torch"] == torch.__version__


def test_saved_split_and_checkpoints_reload(smoke_run):
    from kdlens.config import load_config
    from kdlens.data import Split
    from kdlens.models import create_model
    from kdlens.weights import load_weights

    out, _ = smoke_run
    split = Split.load(out / "split.json")
    assert len(split.test) > 0
    config = load_config(out / "config.yaml")
    model = create_model(config.student.model, (1, 8, 8), 10, **config.student.model_args)
    load_weights(model, out / "checkpoints" / "kd.safetensors")


def test_cli_run_and_refuse_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "kd" in printed and "stage times" in printed
    before = (out / "metrics.json").read_text()
    assert main(["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and (out / "metrics.json").read_text() == before
    args = [
        "run",
        "--config",
        str(SMOKE),
        "--out",
        str(out),
        "--quiet",
        "--overwrite",
        "--set",
        "seed=1",
    ]
    assert main(args) == 0
    assert "seed: 1" in (out / "config.yaml").read_text()


def test_same_seed_repeats_exactly_on_cpu(smoke_run, tmp_path):
    from kdlens.config import load_config
    from kdlens.pipeline import run

    _, first = smoke_run
    again = run(load_config(SMOKE), tmp_path / "again")

    assert set(first["models"]) >= {"teacher", "scratch", "kd"}
    for key in ("accuracy", "nll", "ece"):
        assert key in first["models"]["kd"]
    for part in ("models", "summary", "dataset"):
        assert decided_numbers(again[part]) == decided_numbers(first[part]), part
    env = first["environment"]
    assert {"python", "torch", "kdlens", "device", "threads", "world_size"} <= set(env)


def test_teacher_checkpoint_is_reused(smoke_run, tmp_path):
    from kdlens.config import load_config
    from kdlens.pipeline import run

    out, first = smoke_run
    ckpt = out / "checkpoints" / "teacher.safetensors"
    metrics = run(load_config(SMOKE, [f"teacher.checkpoint={ckpt}"]), tmp_path / "reuse")
    assert metrics["models"]["teacher"]["accuracy"] == first["models"]["teacher"]["accuracy"]
    assert metrics["models"]["teacher"]["train_seconds"] == 0.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "distill.temperature=0"], "distill.temperature"),
        (["--set", "distill.alpha=2"], "distill.alpha"),
        (["--set", "teacher.train.epochs=0"], "teacher.train.epochs"),
        (["--set", "data.name=mnist6k"], "unknown dataset 'mnist6k'"),
        (["--set", "student.model=resnot"], "unknown model 'resnot'"),
        (["--set", "student.model_args.hiden=[3]"], "no argument 'hiden'"),
        (["--set", "distill.method=nope"], "unknown distillation method 'nope'"),
        (["--set", "distill.bogus=1"], "unknown field 'distill.bogus'"),
        (["--set", "teacher.checkpoint=/nonexistent/t.safetensors"], "checkpoint not found"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_folder(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    code = main(["run", "--config", str(SMOKE), "--out", str(out), "--quiet", *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_teacher_checkpoint_with_other_class_count(tmp_path, capsys):
    from kdlens.config import load_config
    from kdlens.models import create_model
    from kdlens.weights import save_weights

    config = load_config(SMOKE)
    wrong = create_model(config.teacher.model, (1, 8, 8), 3, **config.teacher.model_args)
    ckpt = tmp_path / "t3.safetensors"
    save_weights(wrong, ckpt)
    out = tmp_path / "run"
    code = main(
        ["run", "--config", str(SMOKE), "--out", str(out), "--set", f"teacher.checkpoint={ckpt}"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "predicts 3 classes but the data has 10" in err and not out.exists()


def test_missing_and_invalid_config_files(tmp_path, capsys):
    assert (
        main(["run", "--config", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")]) == 2
    )
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    assert main(["run", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_list_shows_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist5k", "cifar100", "mlp", "cnn", "resnet", "torchvision:", "import:", "kd"):
        assert name in out


def test_python_dash_m_and_console_script(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "kdlens", "--version"], capture_output=True, text=True
    )
    assert res.returncode == 0 and "kdlens" in res.stdout
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "kdlens",
            "run",
            "--set",
            "distill.alpha=7",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().startswith("kdlens: error: config: distill.alpha")
