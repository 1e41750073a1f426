"""What a user ships and reads: the int8 ONNX export, plain-text messages, `kdlens list`."""

import json
import os
import subprocess
import sys

import pytest
import torch

from kdlens.cli import main
from tests.conftest import CORE_ONLY, REPO, SMOKE

# Teacher and student trained on every batch for a few epochs: confident enough that int8
# rounding moves few predictions (the 4-batch smoke models are near chance, with logits so flat
# that any rounding flips near-ties: there the two int8 models agreed on 98.9%).
TRAINED = [
    *CORE_ONLY,
    "deploy.quantize=true",
    "teacher.train.max_batches=null",
    "teacher.train.epochs=5",
    "student.train.max_batches=null",
    "student.train.epochs=12",
]


def _kdlens(*args: str) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: its own process, stdout and stderr pipes (not a terminal)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "kdlens", *args], capture_output=True, text=True, env=env
    )


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ship") / "run"
    sets = sum((["--set", s] for s in TRAINED), [])
    # Progress is left on (no --quiet) and --seeds 1 given: both must change nothing printed.
    res = _kdlens("run", "--config", str(SMOKE), "--out", str(out), "--seeds", "1", *sets)
    assert res.returncode == 0, res.stderr
    return out, res


def test_run_and_list_print_plain_text(trained_run):
    out, res = trained_run
    for text in (res.stdout, res.stderr, _kdlens("list").stdout):
        assert "\x1b" not in text and "\r" not in text  # no escape codes, no redrawn bars
    assert "distillation" in res.stdout and "student (kd) vs teacher:" in res.stdout
    assert "kd_int8: " in res.stdout or "kd_int8 " in res.stdout  # the int8 copy's verdict
    # --seeds 1 is today's single run: one ordinary run folder, no seed subfolders.
    assert (out / "metrics.json").is_file() and not (out / "seed-0").exists()


def test_export_int8_onnx_agrees_with_the_pytorch_int8_student(trained_run, capsys):
    pytest.importorskip("onnxscript")
    from kdlens.deploy.onnx_export import OrtModel, batched_logits
    from kdlens.run import load_run

    out, _ = trained_run
    assert main(["export", str(out), "--model", "kd_int8"]) == 0
    captured = capsys.readouterr()
    assert "\x1b" not in captured.out + captured.err
    assert "agree with the PyTorch int8 model" in captured.out
    assert "kd (fp32)" in captured.out and "kd_int8 (int8)" in captured.out
    record = json.loads((out / "export" / "kd_int8.json").read_text())
    assert record["quantization"] == "onnxruntime-dynamic-int8" and record["source"] == "kd"
    assert record["agreement_with_pytorch_int8"] >= 0.99
    assert record["size_bytes"] < record["fp32"]["size_bytes"]
    for timing in (record["onnxruntime"], record["fp32"]["onnxruntime"], record["pytorch_int8"]):
        assert timing["latency_ms_b1"] > 0
    # Measured again here, independently of the exporter's own check.
    run = load_run(out)
    x = run.normalizer(run.tensors("test")[0])
    onnx = OrtModel(out / "export" / "kd_int8.onnx")
    agree = batched_logits(onnx, x).argmax(-1) == batched_logits(
        run.load_model("kd_int8"), x
    ).argmax(-1)
    assert agree.float().mean() >= 0.99
    assert agree.float().mean().item() == pytest.approx(record["agreement_with_pytorch_int8"])
    for batch in (1, 7):  # the batch dimension stays dynamic
        assert onnx(torch.randn(batch, 1, 8, 8)).shape == (batch, 10)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["models"]["kd_int8"]["onnx"] == record


def _descriptions():
    from kdlens.data import DATASETS, list_sources
    from kdlens.distill import DISTILLERS
    from kdlens.models import MODELS, PREFIXES

    for kind, entries in (
        ("dataset", DATASETS.describe()),
        ("data source", list_sources()),
        ("model", MODELS.describe()),
        ("model source", PREFIXES),
        ("method", DISTILLERS.describe()),
    ):
        for name, text in entries.items():
            yield pytest.param(text, id=f"{kind}:{name}")


@pytest.mark.parametrize("text", list(_descriptions()))
def test_list_descriptions_are_whole_plain_sentences(text):
    assert text[:1].isupper() or text[:1].isdigit(), text
    assert text.endswith("."), text
    assert "`" not in text, text  # no ``literal``, `role`, :func:`x` markup
    assert "\n" not in text and "\x1b" not in text, text


def test_plain_text_removes_rest_markup():
    from kdlens.registry import first_paragraph, plain_text

    doc = """One conv block per entry of ``channels``; see :func:`kdlens.fit` and `T`.

    More detail that ``kdlens list`` leaves out."""
    assert plain_text(first_paragraph(doc)) == (
        "One conv block per entry of channels; see kdlens.fit and T."
    )
