"""The deploy stage inside a run, the run loader, and ``kdlens export`` on the smoke run."""

import json
import shutil

import pytest
import torch

from kdlens.cli import main
from kdlens.evaluate import accuracy
from tests.conftest import SMOKE

SPEED_KEYS = {"size_bytes", "flops", "latency_ms_b1", "throughput_b256", "threads"}


def test_smoke_run_measures_every_model_and_quantizes_the_student(smoke_run):
    out, metrics = smoke_run
    models = metrics["models"]
    assert {"teacher", "scratch", "kd", "kd_int8"} <= set(models)
    for name, m in models.items():
        if "family" in m:  # scikit-learn surrogates (readable stage): no torch graph to time
            continue
        assert SPEED_KEYS <= set(m), name
        assert m["size_bytes"] > 0 and m["latency_ms_b1"] > 0 and m["throughput_b256"] > 0
    # mlp [32] on 8x8 digits: 2 FLOPs per multiply-add, 64*32 + 32*10 of them.
    assert models["kd"]["flops"] == 2 * (64 * 32 + 32 * 10) == models["kd_int8"]["flops"]
    assert models["kd"]["size_bytes"] == (out / "checkpoints" / "kd.safetensors").stat().st_size
    assert models["kd_int8"]["size_bytes"] < models["kd"]["size_bytes"]
    assert models["kd_int8"]["quantization"] == "torch-dynamic-int8"
    assert abs(models["kd_int8"]["accuracy"] - models["kd"]["accuracy"]) < 0.05
    summary = metrics["summary"]["teacher_vs_student"]
    assert summary["params"] == models["teacher"]["params"] / models["kd"]["params"]
    assert summary["size_bytes"] > 1 and summary["flops"] > 1
    assert metrics["summary"]["student_vs_int8"]["size_bytes"] > 1
    table = json.loads((out / "figures" / "compression_table.json").read_text())
    stages = {r["name"]: r["stage"] for r in table["rows"]}
    assert [stages[n] for n in ("teacher", "scratch", "kd", "kd_int8")] == [
        "teacher",
        "student",
        "student",
        "int8",
    ]
    assert (out / "figures" / "compression_accuracy_vs_size.png").stat().st_size > 0


def test_load_run_rebuilds_every_model(smoke_run):
    from kdlens.run import load_run

    out, metrics = smoke_run
    run = load_run(out)
    torch_models = {"teacher", "scratch", "kd", "kd_int8", "soft_tree_scratch", "soft_tree_kd"}
    assert set(run.model_names()) == torch_models  # not the scikit-learn surrogates
    x, y = run.tensors("test")
    assert len(y) == metrics["dataset"]["n_test"]
    x = run.normalizer(x)
    for name in run.model_names():
        with torch.no_grad():
            logits = run.load_model(name)(x)
        assert accuracy(logits, y) == pytest.approx(metrics["models"][name]["accuracy"], abs=1e-6)


def _copy(smoke_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(smoke_run[0], run_dir)
    return run_dir


def test_export_parity_on_the_smoke_run(smoke_run, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    from kdlens.deploy.onnx_export import OrtModel

    run_dir = _copy(smoke_run, tmp_path)
    assert main(["export", str(run_dir), "--model", "kd"]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime" in printed and "argmax identical" in printed
    record = json.loads((run_dir / "export" / "kd.json").read_text())
    assert record["max_abs_logit_diff"] <= 1e-4 and record["argmax_identical"]
    assert record["n_checked"] == smoke_run[1]["dataset"]["n_test"]
    for runtime in ("pytorch", "onnxruntime"):
        assert record[runtime]["latency_ms_b1"] > 0
    assert json.loads((run_dir / "metrics.json").read_text())["models"]["kd"]["onnx"] == record
    ort = OrtModel(run_dir / "export" / "kd.onnx")
    for batch in (1, 7):  # the batch dimension is dynamic
        assert ort(torch.randn(batch, 1, 8, 8)).shape == (batch, 10)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--model", "nope"], "'nope'"),
        (["--model", "tree_kd"], "'tree_kd'"),  # a scikit-learn surrogate: no torch weights
    ],
)
def test_export_bad_model_is_one_line_exit_2(smoke_run, tmp_path, capsys, args, named):
    run_dir = _copy(smoke_run, tmp_path)
    assert main(["export", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and err.startswith("kdlens: error:")
    assert not (run_dir / "export").exists() or not list((run_dir / "export").glob("*.onnx"))


def test_export_of_a_missing_run_is_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_parity_failure_is_loud():
    from kdlens.deploy.onnx_export import ExportError, check_parity

    a = torch.randn(20, 10)
    assert check_parity("m", a, a + 5e-5)["argmax_identical"]
    with pytest.raises(ExportError, match="max abs logit difference"):
        check_parity("m", a, a + 1e-3)


def test_deploy_stage_prunes_with_kd_and_with_hard_labels(smoke_run, tmp_path):
    """Pruning at 50% on the smoke run's distilled student, fine-tuned both ways."""
    from kdlens.config import load_config
    from kdlens.pipeline import prepare
    from kdlens.run import load_run
    from kdlens.stages import deploy, evaluate

    run_dir = _copy(smoke_run, tmp_path)
    config = load_config(SMOKE, ["deploy.prune=[0.5]", "deploy.finetune_epochs=1"])
    ctx = prepare(config, run_dir, overwrite=True)
    run = load_run(run_dir)
    for name in ("teacher", "scratch", "kd"):
        ctx.add_model(run.records[name], run.load_model(name))
    evaluate.run(ctx)
    deploy.run(ctx)
    models = ctx.metrics["models"]
    assert {"kd_pruned50", "kd_pruned50_hard", "kd_pruned50_int8", "kd_int8"} <= set(models)
    from kdlens.deploy.prune import prunable_layers

    n = sum(m.weight.numel() for m in prunable_layers(run.load_model("kd")))
    for name in ("kd_pruned50", "kd_pruned50_hard"):
        assert models[name]["sparsity"] == round(0.5 * n) / n
        assert models[name]["finetune"] == ("kd" if name == "kd_pruned50" else "hard")
        pruned = load_run(run_dir).load_model(name)  # saved with the masks made permanent
        assert sum(int((m.weight == 0).sum()) for m in prunable_layers(pruned)) == round(0.5 * n)
    rows = json.loads((run_dir / "figures" / "pruning.json").read_text())
    assert rows[0]["target_sparsity"] == 0.5 and {"none", "kd", "hard"} <= set(rows[0])
    assert (run_dir / "figures" / "pruning_accuracy_vs_sparsity.png").is_file()
    assert ctx.metrics["deploy"]["quantization"]["method"] == "torch-dynamic-int8"
