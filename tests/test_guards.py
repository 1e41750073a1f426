"""Divergence guard, gradient clipping, bf16 autocast and safe loading of checkpoints."""

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

from kdlens.cli import main
from kdlens.config import TrainConfig
from kdlens.data import BatchLoader, Normalizer
from kdlens.distill import Distiller
from kdlens.errors import CheckpointError
from kdlens.run import RunFolder, StageCheckpoint
from kdlens.train import DivergenceError, fit
from kdlens.weights import load_weights, read_state_dict
from tests.conftest import SMOKE

pytestmark = pytest.mark.usefixtures("single_thread")


class _NanAfter(nn.Module):
    """An MLP whose training forward returns NaN from its ``after``-th call on."""

    def __init__(self, input_shape, num_classes, after):
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(), nn.Linear(int(torch.tensor(input_shape).prod()), num_classes)
        )
        self.after, self.calls = after, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.after:
                return out * float("nan")
        return out


def _folder(path):
    """A run folder for a lone training stage: its checkpoints/ holds the state."""
    folder = RunFolder(path)
    folder.make_dirs()
    return folder


def nan_after(input_shape, num_classes, after: int = 6):
    """``import:`` factory used by the CLI test below."""
    return _NanAfter(input_shape, num_classes, after)


def _loaders(n=64, batch=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 4, 4, generator=g)
    y = (x.flatten(1).sum(1) > 0).long()
    norm = Normalizer.fit(x)
    return BatchLoader(x, y, norm, batch, shuffle=True, seed=1), BatchLoader(x, y, norm, 64)


def test_divergence_names_epoch_and_step_and_keeps_last_good_state(tmp_path):
    train, val = _loaders()  # 4 batches per epoch: call 7 is epoch 2, step 3
    ckpt = StageCheckpoint(_folder(tmp_path), "student")
    with pytest.raises(DivergenceError) as info:
        fit(
            Distiller(nan_after((1, 4, 4), 2, after=7)),
            train,
            val,
            TrainConfig(epochs=3),
            "student",
            checkpoint=ckpt,
        )
    msg = str(info.value)
    assert "loss became nan at epoch 2, step 3" in msg and msg.startswith("student:")
    assert "epoch 1 is kept in" in msg and "\n" not in msg
    state = torch.load(ckpt.state_path, weights_only=True)
    assert state["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_divergence_in_a_run_is_one_line_exit_2_and_resumable_state(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    args += [
        "--set",
        "student.model=import:tests.test_guards:nan_after",
        "--set",
        "student.model_args.after=6",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "scratch: loss became nan at epoch 2, step 2" in err and "scratch.state.pt" in err
    assert (out / "checkpoints" / "teacher.safetensors").is_file()  # the finished stage is kept
    assert (
        torch.load(out / "checkpoints" / "scratch.state.pt", weights_only=True)["progress"]["epoch"]
        == 1
    )
    assert not (out / "metrics.json").exists()
    # Continue from the kept epoch with a changed setting (here: a model that no longer fails).
    fixed = ["--set", "student.model_args.after=1000000"]
    assert main(["run", "--resume", str(out), "--quiet", *fixed]) == 0
    assert (out / "metrics.json").is_file() and "after: 1000000" in (
        out / "config.yaml"
    ).read_text()


def _sgd_step_size(grad_clip):
    train, val = _loaders(n=16, batch=16)  # one step per epoch
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    cfg = TrainConfig(
        epochs=1, optimizer="sgd", lr=1.0, momentum=0.0, schedule="constant", grad_clip=grad_clip
    )
    fit(Distiller(model), train, val, cfg)
    after = torch.cat([p.detach().flatten() for p in model.parameters()])
    return float((after - before).norm())


def test_grad_clip_bounds_the_step():
    """SGD without momentum, lr 1: the step is the gradient, so its norm is at most grad_clip."""
    assert _sgd_step_size(None) > 0.1  # unclipped, the gradient is far larger than the clip
    assert _sgd_step_size(1e-3) == pytest.approx(1e-3, rel=1e-3)


def test_bf16_trains_under_autocast():
    train, val = _loaders()
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append((m.training, o.dtype)))
    result = fit(Distiller(model), train, val, TrainConfig(epochs=2, precision="bf16"))
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}  # eval in fp32
    assert model[1].weight.dtype == torch.float32  # the weights stay fp32
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)


def test_bf16_smoke_run(tmp_path):
    out = tmp_path / "bf16"
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    for role in ("teacher", "student"):
        args += ["--set", f"{role}.train.precision=bf16"]
    assert main(args) == 0
    assert "precision: bf16" in (out / "config.yaml").read_text()


class _Evil:
    """Unpickling this would create a file: what a malicious checkpoint would do."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


@pytest.mark.parametrize("fmt", ["torch", "pickle"])
def test_a_pickle_that_runs_code_is_refused(tmp_path, fmt):
    marker = tmp_path / "pwned"
    bad = tmp_path / "teacher.pt"
    payload = {"weight": torch.zeros(2), "evil": _Evil(marker)}
    if fmt == "torch":
        torch.save(payload, bad)
    else:
        bad.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match="was refused: loading it would run code") as info:
        read_state_dict(bad)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_crafted_resume_state_is_refused(smoke_run, tmp_path, capsys):
    import shutil

    src, _ = smoke_run
    out = tmp_path / "run"
    shutil.copytree(src, out)
    (out / "checkpoints" / "kd.done.json").unlink()
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "evil": _Evil(marker)}, out / "checkpoints" / "kd.state.pt")
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "kd.state.pt was refused: loading it would run code" in err and not marker.exists()


def test_plain_state_dict_pt_files_still_load(tmp_path):
    model = nn.Linear(3, 2)
    torch.save({"state_dict": model.state_dict()}, tmp_path / "ok.pt")
    other = nn.Linear(3, 2)
    load_weights(other, tmp_path / "ok.pt")
    assert torch.equal(other.weight, model.weight)


def test_divergence_names_the_epoch_actually_saved(tmp_path):
    train, val = _loaders()  # 4 batches per epoch: call 13 is epoch 4, step 1
    ckpt = StageCheckpoint(_folder(tmp_path), "student", every=2)
    with pytest.raises(DivergenceError, match="epoch 4, step 1; epoch 2 is kept in"):
        fit(
            Distiller(nan_after((1, 4, 4), 2, after=13)),
            train,
            val,
            TrainConfig(epochs=5),
            "student",
            checkpoint=ckpt,
        )
    assert torch.load(ckpt.state_path, weights_only=True)["progress"]["epoch"] == 2
