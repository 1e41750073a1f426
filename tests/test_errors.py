"""Every bad input is one line, exit code 2, and leaves nothing half-written (docs/errors.md).

Cases already covered in tests/test_cli.py, tests/test_config.py, tests/test_guards.py and
tests/test_resume.py are listed in docs/errors.md with their test; the rest are here.
"""

import errno
import json
import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from kdlens.cli import main
from kdlens.config import load_config
from kdlens.data import Split, check_dataset
from kdlens.data.split import check_split
from kdlens.errors import ConfigError, DataError
from kdlens.models import create_model
from kdlens.weights import save_weights
from tests.conftest import SMOKE

TABULAR_TEACHER = ["--set", "teacher.model=mlp"]  # npz test data is tabular: no cnn


pytestmark = pytest.mark.usefixtures("single_thread")


def expect_error(tmp_path, capsys, extra, message, config=SMOKE):
    out = tmp_path / "run"
    args = ["run", "--out", str(out), "--quiet", *extra]
    if config is not None:
        args[1:1] = ["--config", str(config)]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("kdlens: error: ") and message in err, err
    assert not out.exists()
    return err


def _npz(tmp_path, name="data.npz", n=60, classes=3, **arrays) -> Path:
    g = np.random.default_rng(0)
    data = {"x": g.normal(size=(n, 5)).astype("float32"), "y": np.arange(n) % classes, **arrays}
    path = tmp_path / name
    np.savez(path, **data)
    return path


# --- config --------------------------------------------------------------------------------------


def test_wrong_type_in_yaml(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("teacher:\n  train:\n    batch_size: [64]\n")
    expect_error(
        tmp_path,
        capsys,
        [],
        "config: teacher.train.batch_size: Input should be a valid integer",
        cfg,
    )


def test_unknown_nested_key_in_yaml_suggests(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("student:\n  trian: {epochs: 3}\n")
    expect_error(
        tmp_path, capsys, [], "unknown field 'student.trian'; did you mean 'student.train'?", cfg
    )


def test_fractions_that_leave_nothing_to_train(tmp_path, capsys):
    extra = ["--set", "data.val_fraction=0.5", "--set", "data.test_fraction=0.5"]
    expect_error(tmp_path, capsys, extra, "val_fraction + test_fraction must be below 1")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda(tmp_path, capsys):
    expect_error(
        tmp_path,
        capsys,
        ["--set", "device=cuda"],
        "config: device: 'cuda' requested but CUDA is not available",
    )


def test_bf16_on_a_gpu_without_it(monkeypatch):
    from kdlens.train import check_precision

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    with pytest.raises(ConfigError, match="bf16 is not supported by this GPU"):
        check_precision("bf16", torch.device("cuda"))


# --- checkpoints ---------------------------------------------------------------------------------


def _teacher_checkpoint(tmp_path, **overrides) -> Path:
    config = load_config(SMOKE)
    spec = config.teacher
    model = create_model(
        overrides.get("model", spec.model),
        overrides.get("shape", (1, 8, 8)),
        10,
        **overrides.get("args", spec.model_args),
    )
    path = tmp_path / "teacher.safetensors"
    save_weights(model, path)
    return path


def test_truncated_safetensors(tmp_path, capsys):
    ckpt = _teacher_checkpoint(tmp_path)
    ckpt.write_bytes(ckpt.read_bytes()[:-100])
    expect_error(
        tmp_path, capsys, ["--set", f"teacher.checkpoint={ckpt}"], "is corrupt or truncated"
    )


def test_corrupt_pt_file(tmp_path, capsys):
    ckpt = tmp_path / "teacher.pt"
    # These bytes read as "pickle protocol 216": torch warns before failing, and the user must
    # still see one line.
    ckpt.write_bytes(b"\x80\xd8" + random.Random(0).randbytes(2046))
    expect_error(
        tmp_path,
        capsys,
        ["--set", f"teacher.checkpoint={ckpt}"],
        "is corrupt, truncated or not a plain tensor file",
    )


def test_truncated_pt_file(tmp_path, capsys):
    ckpt = tmp_path / "teacher.pt"
    torch.save(create_model("cnn", (1, 8, 8), 10, channels=[8, 16], hidden=32).state_dict(), ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:500])
    expect_error(
        tmp_path, capsys, ["--set", f"teacher.checkpoint={ckpt}"], "is corrupt or truncated"
    )


def test_checkpoint_of_another_architecture(tmp_path, capsys):
    ckpt = _teacher_checkpoint(tmp_path, model="mlp", args={"hidden": [16]})
    expect_error(
        tmp_path, capsys, ["--set", f"teacher.checkpoint={ckpt}"], "is for another architecture"
    )


def test_teacher_checkpoint_for_another_input_shape(tmp_path, capsys):
    ckpt = _teacher_checkpoint(tmp_path, model="mlp", args={"hidden": [16]}, shape=(1, 28, 28))
    extra = ["--set", "teacher.model=mlp", "--set", "teacher.model_args.hidden=[16]"]
    extra += ["--set", f"teacher.checkpoint={ckpt}"]
    expect_error(tmp_path, capsys, extra, "was made for inputs of another shape")


# --- data ----------------------------------------------------------------------------------------


def test_npz_dataset_trains(tmp_path):
    path = _npz(tmp_path, class_names=np.array(["a", "b", "c"]))
    extra = [f"data.name=npz:{path}", "teacher.model=mlp", "teacher.model_args.hidden=[8]"]
    from kdlens.pipeline import run

    metrics = run(load_config(SMOKE, extra), tmp_path / "ok")
    assert metrics["dataset"]["num_classes"] == 3 and metrics["dataset"]["n_train"] > 0


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_data_with_nan_or_inf(tmp_path, capsys, bad):
    x = np.ones((60, 5), "float32")
    x[7, 2] = bad
    path = _npz(tmp_path, x=x)
    expect_error(
        tmp_path,
        capsys,
        [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"],
        "1 examples contain NaN or inf",
    )


def test_empty_data(tmp_path, capsys):
    path = _npz(tmp_path, x=np.zeros((0, 5), "float32"), y=np.zeros(0, "int64"))
    expect_error(tmp_path, capsys, [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"], "is empty")


def test_too_few_examples_for_three_splits(tmp_path, capsys):
    path = _npz(tmp_path, n=2, classes=2)
    expect_error(
        tmp_path,
        capsys,
        [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"],
        "2 examples are too few to split",
    )


def test_empty_split_is_named():
    from kdlens.data import create_dataset

    ds = create_dataset("wine")
    with pytest.raises(DataError, match="the val split is empty"):
        check_split(Split(list(range(100)), [], [100, 101]), ds)


def test_labels_out_of_range(tmp_path, capsys):
    y = np.arange(60) % 3
    y[4] = -1
    path = _npz(tmp_path, y=y)
    expect_error(
        tmp_path,
        capsys,
        [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"],
        "labels must lie in [0, 2], found -1..2",
    )
    ds = load_npz_unchecked(_npz(tmp_path, "b.npz", class_names=np.array(["a", "b"])))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 1\], found 0..2"):
        check_dataset(ds)


def load_npz_unchecked(path):
    from kdlens.data.files import load_npz

    return load_npz(path)


def test_class_missing_from_training_split(tmp_path, capsys):
    path = _npz(tmp_path, class_names=np.array(["a", "b", "c", "never"]))
    expect_error(
        tmp_path,
        capsys,
        [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"],
        "classes missing from the training split: ['never']",
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "data file not found"),
        (lambda p: p.write_bytes(b"not a zip"), "is not a readable .npz file"),
        (lambda p: np.savez(p, x=np.zeros((4, 2))), "has no array 'y'"),
        (lambda p: np.savez(p, x=np.zeros((4, 2)), y=np.zeros(4)), "y must be (N,) integer labels"),
        (
            lambda p: np.savez(p, x=np.array([{}] * 4, dtype=object), y=np.zeros(4, int)),
            "object arrays are refused",
        ),
    ],
)
def test_bad_data_files(tmp_path, capsys, make, message):
    path = tmp_path / "d.npz"
    make(path)
    expect_error(tmp_path, capsys, [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"], message)


# --- teacher and student against the data and each other ---------------------------------------


def wrong_classes(input_shape, num_classes):
    """A user factory that ignores num_classes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(input_shape)), 5))


def fixed_input(input_shape, num_classes):
    """A user factory that only takes 28x28 images, whatever the data."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, num_classes))


def test_teacher_predicting_other_classes(tmp_path, capsys):
    extra = ["--set", "teacher.model=import:tests.test_errors:wrong_classes"]
    expect_error(
        tmp_path,
        capsys,
        extra,
        "the teacher outputs (2, 5) for a batch of 2 but the data has 10 classes",
    )


def test_student_for_another_input_shape(tmp_path, capsys):
    extra = ["--set", "student.model=import:tests.test_errors:fixed_input"]
    expect_error(tmp_path, capsys, extra, "the student cannot take inputs of shape (1, 8, 8)")


# --- output folder -------------------------------------------------------------------------------


def test_output_path_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    code = main(["run", "--config", str(SMOKE), "--out", str(target), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "exists and is not a folder" in err and target.read_text() == "x"


def test_unwritable_output_folder(tmp_path, capsys):
    from kdlens.run.folder import writable as _writable

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    target = locked / "run"
    if _writable(locked):  # root ignores permission bits: use a folder no one can write
        target = Path("/sys/kdlens-run")
        if not Path("/sys").is_dir() or _writable(Path("/sys")):
            pytest.skip("no unwritable folder available")
    try:
        code = main(["run", "--config", str(SMOKE), "--out", str(target), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and f"output folder {target} is not writable" in err
        assert not target.exists()
    finally:
        locked.chmod(0o755)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
def test_full_disk_while_writing_metrics(tmp_path, capsys, monkeypatch):
    """The write of metrics.json fails with ENOSPC: one line naming the file, no partial file."""
    real_fdopen = os.fdopen

    class _Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        return _Full(f) if "metrics.json" in os.readlink(f"/proc/self/fd/{fd}") else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    out = tmp_path / "run"
    code = main(["run", "--config", str(SMOKE), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"cannot write {out / 'metrics.json'}: No space left on device" in err
    assert not (out / "metrics.json").exists()
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]  # no temporary left behind
    for p in out.glob("*.json"):
        json.loads(p.read_text())  # everything that was written is whole


def test_full_disk_on_a_real_tiny_filesystem(tmp_path, capsys):
    """A 32 KiB tmpfs (needs root and mount; skipped elsewhere): the run stops with one line."""
    import subprocess

    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        out = mnt / "run"
        code = main(["run", "--config", str(SMOKE), "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert "No space left on device" in err and f"cannot write {out}" in err
        assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


# --- resume --------------------------------------------------------------------------------------


def test_resume_when_the_data_changed(smoke_run, tmp_path, capsys):
    import shutil

    src, _ = smoke_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    split = json.loads((out / "split.json").read_text())
    split["train"], split["val"] = split["train"][1:], split["val"] + split["train"][:1]
    (out / "split.json").write_text(json.dumps(split))
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "the data or its split changed" in capsys.readouterr().err


def _interrupted_copy(smoke_run, tmp_path):
    import shutil

    src, _ = smoke_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    (out / "checkpoints" / "kd.done.json").unlink()  # as if killed while training kd
    return out, out / "checkpoints" / "kd.state.pt"


def test_resume_with_a_truncated_state(smoke_run, tmp_path, capsys):
    out, state = _interrupted_copy(smoke_run, tmp_path)
    torch.save({"format": 1, "model": {"w": torch.zeros(1000)}}, state)
    state.write_bytes(state.read_bytes()[:300])
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "kd.state.pt is corrupt or truncated" in err and len(err.splitlines()) == 1


def test_resume_with_a_state_of_another_model(smoke_run, tmp_path, capsys):
    out, state = _interrupted_copy(smoke_run, tmp_path)
    torch.save({"format": 1, "model": {"other.weight": torch.zeros(3)}}, state)
    assert main(["run", "--resume", str(out), "--quiet"]) == 2
    assert "kd.state.pt holds another model's weights" in capsys.readouterr().err


def test_atomic_writes_get_the_usual_file_mode(tmp_path):
    import os

    from kdlens.utils import write_json

    mask = os.umask(0o022)
    os.umask(mask)
    write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~mask


# --- values that used to pass and fail late (or hang) --------------------------------------------


@pytest.mark.parametrize(
    "override, message",
    [
        ("distill.temperature=inf", "distill.temperature: Input should be a finite number"),
        (
            "distill.temperature=1e308",
            "distill.temperature: Input should be less than or equal to 1000",
        ),
        ("teacher.train.lr=inf", "teacher.train.lr: Input should be a finite number"),
        ("teacher.train.lr=.nan", "teacher.train.lr: Input should be a finite number"),
        (
            "student.train.augment.mixup=inf",
            "student.train.augment.mixup: Input should be a finite",
        ),
        ("deploy.timing_seconds=inf", "deploy.timing_seconds: Input should be a finite number"),
        ("student.model_args.hidden=[0]", "every hidden width must be a positive integer"),
        ("student.model_args.hidden=-3", "hidden must be a list of layer widths"),
        (
            "readable.sweep_tree_depths=[0, 2]",
            "readable.sweep_tree_depths.0: Input should be greater",
        ),
        ("seed=-1", "seed: Input should be greater than or equal to 0"),
        (f"seed={2**32}", "seed: Input should be less than 4294967296"),
    ],
)
def test_values_that_used_to_fail_late_are_refused_first(tmp_path, capsys, override, message):
    expect_error(tmp_path, capsys, ["--set", override], message)
    assert not (tmp_path / "run").exists()


def frozen_student(input_shape, num_classes):
    """A student whose parameters cannot train."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def test_a_student_with_nothing_to_train(tmp_path, capsys):
    expect_error(
        tmp_path,
        capsys,
        ["--set", "student.model=import:tests.test_errors:frozen_student"],
        "the student has no trainable parameters",
    )


def test_a_teacher_checkpoint_that_is_a_folder(tmp_path, capsys):
    expect_error(
        tmp_path,
        capsys,
        ["--set", f"teacher.checkpoint={tmp_path}"],
        "is a folder, not a weights file",
    )


def test_teacher_weights_with_nan(tmp_path, capsys):
    from kdlens.config import load_config
    from kdlens.models import create_model

    spec = load_config(SMOKE).teacher
    model = create_model(spec.model, (1, 8, 8), 10, **spec.model_args)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    first = next(k for k, v in state.items() if v.is_floating_point())
    state[first][0] = float("nan")
    path = tmp_path / "nan.safetensors"
    from safetensors.torch import save_file

    save_file(state, str(path))
    expect_error(
        tmp_path, capsys, ["--set", f"teacher.checkpoint={path}"], "holds NaN or infinite values"
    )


@pytest.mark.parametrize(
    "make, message",
    [
        (
            lambda p: np.savez(
                p, x=np.zeros((4, 2), np.float32), y=np.arange(4), feature_names=np.array(["a"])
            ),
            "1 feature_names for 2 features",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((4, 0), np.float32), y=np.arange(4)),
            "x has no features",
        ),
        (
            lambda p: np.savez(p, x=np.zeros((4, 2), np.float32), y=np.array([0, 1, 2, 2**40])),
            "classes 3, 4, 5, 6, 7 and 1,099,511,627,768 more have no example",
        ),
    ],
)
def test_npz_shapes_and_labels_that_used_to_fail_late(tmp_path, capsys, make, message):
    path = tmp_path / "data.npz"
    make(path)
    expect_error(tmp_path, capsys, [*TABULAR_TEACHER, "--set", f"data.name=npz:{path}"], message)
