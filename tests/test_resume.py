"""Checkpoint and resume: a killed run continues to the same numbers as one never interrupted."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from kdlens.cli import main
from kdlens.config import AugmentConfig, TrainConfig
from kdlens.data import BatchLoader, Normalizer
from kdlens.distill import Distiller
from kdlens.run import RunFolder, StageCheckpoint
from kdlens.train import fit
from kdlens.utils import set_seed
from tests.conftest import REPO, SMOKE, decided_numbers

LONGER = ["--set", "student.train.epochs=8"]


def _folder(path):
    """A run folder for a lone training stage: its checkpoints/ holds the state."""
    folder = RunFolder(path)
    folder.make_dirs()
    return folder


def _numbers(metrics: dict) -> dict:
    """Everything in metrics.json that training decides (not wall-clock times)."""
    return decided_numbers({k: metrics[k] for k in ("models", "summary", "dataset")})


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Subprocesses run with one thread (fast on a busy machine); the in-process baseline too,
    so every run sums in the same order."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    torch.set_num_threads(before)


def test_sigkill_mid_stage_then_resume_gives_the_same_metrics(tmp_path, one_thread):
    from kdlens.config import load_config
    from kdlens.pipeline import run

    out = tmp_path / "killed"
    env = one_thread
    cmd = [sys.executable, "-m", "kdlens", "run", "--config", str(SMOKE), "--out", str(out)]
    proc = subprocess.Popen([*cmd, "--quiet", *LONGER], env=env, stderr=subprocess.PIPE)
    state = out / "checkpoints" / "scratch.state.pt"
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # mid-epoch of the scratch student: teacher done, kd not begun
    proc.wait()
    assert not (out / "metrics.json").exists()
    assert (out / "checkpoints" / "teacher.done.json").exists()
    assert not (out / "checkpoints" / "kd.safetensors").exists()

    assert main(["run", "--resume", str(out), "--quiet"]) == 0  # in-process, also one thread
    resumed = json.loads((out / "metrics.json").read_text())
    assert not list((out / "checkpoints").glob("*.state.pt"))  # finished stages drop their state

    whole = run(load_config(SMOKE, [LONGER[1]]), tmp_path / "whole")
    assert _numbers(resumed) == _numbers(whole)


def _tiny_problem(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    norm = Normalizer.fit(x)
    return x, y, norm


def _fit_tiny(tmp_path, epochs, checkpoint=None, on_epoch=None, **train):
    x, y, norm = _tiny_problem()
    # Dropout and mixup draw from the global and the loader's generators: resume must restore both.
    cfg = TrainConfig(
        epochs=epochs, batch_size=16, lr=0.05, augment=AugmentConfig(shift=1, mixup=0.4), **train
    )
    set_seed(0)
    student = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.Dropout(0.3), nn.Linear(32, 2))
    loader = BatchLoader(x, y, norm, 16, shuffle=True, augment=cfg.augment, num_classes=2, seed=3)
    val = BatchLoader(x[:32], y[:32], norm, 32)
    distiller = Distiller(student)
    result = fit(distiller, loader, val, cfg, checkpoint=checkpoint, on_epoch=on_epoch)
    return result, student


class _Stop(Exception):
    pass


def test_interrupted_fit_resumes_exactly(tmp_path):
    whole, whole_model = _fit_tiny(tmp_path, 5)

    ckpt = StageCheckpoint(_folder(tmp_path), "s", every=1)

    def stop_after_3(record):
        if record["epoch"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        _fit_tiny(tmp_path, 5, checkpoint=ckpt, on_epoch=stop_after_3)
    saved = torch.load(ckpt.state_path, weights_only=True)  # tensors and plain values only
    assert saved["progress"]["epoch"] == 3

    ckpt.resume = True
    resumed, resumed_model = _fit_tiny(tmp_path, 5, checkpoint=ckpt)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.history == whole.history
    assert resumed.best_epoch == whole.best_epoch
    for a, b in zip(resumed_model.parameters(), whole_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_every_zero_writes_no_state(tmp_path):
    ckpt = StageCheckpoint(_folder(tmp_path), "s", every=0)
    _fit_tiny(tmp_path, 2, checkpoint=ckpt)
    assert not ckpt.state_path.exists()


def test_resume_of_a_finished_run_retrains_nothing(smoke_run, tmp_path, capsys):
    import shutil

    src, first = smoke_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    (out / "metrics.json").unlink()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    again = json.loads((out / "metrics.json").read_text())
    # Evaluation ran again, here with one thread: the last float bits may differ, nothing else.
    a, b = _flat(_numbers(again)), _flat(_numbers(first))
    assert a.keys() == b.keys()
    floats = [k for k, v in b.items() if isinstance(v, float)]
    assert [a[k] for k in floats] == pytest.approx([b[k] for k in floats], rel=1e-5, abs=1e-9)
    assert {k: v for k, v in a.items() if k not in floats} == {
        k: v for k, v in b.items() if k not in floats
    }
    for name in ("teacher", "scratch", "kd"):
        assert again["models"][name]["accuracy"] == first["models"][name]["accuracy"]
    assert (
        again["models"]["teacher"]["train_seconds"] == first["models"]["teacher"]["train_seconds"]
    )


def test_resume_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path / "nothing"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a kdlens run folder" in err and len(err.splitlines()) == 1
    assert main(["run", "--resume", str(tmp_path), "--config", str(SMOKE)]) == 2
    assert "--resume continues a run with its own config" in capsys.readouterr().err
