"""Each model gets the input it expects (``teacher.preprocess`` / ``student.preprocess``), a loaded
teacher is scored before anything learns from it, a teacher known by its saved logits is looked
up by dataset row, and a run's bad assets are one line with nothing written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from kdlens.config import PreprocessConfig, load_config
from kdlens.data import BatchLoader, Normalizer, create_dataset, make_split
from kdlens.errors import ConfigError
from kdlens.models import create_model
from kdlens.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, resolve_preprocess
from kdlens.weights import save_weights
from tests.conftest import CORE_ONLY, SMOKE


class Seen(nn.Module):
    """Returns what it was fed, flattened to two 'logits' per example, and keeps it."""

    def forward(self, x):
        self.x = x
        return x.flatten(1)[:, :2]


def wrapped(cfg: dict, x: torch.Tensor, model: nn.Module | None = None):
    norm = Normalizer.fit(x)
    model = model or Seen()
    resolved = resolve_preprocess(
        PreprocessConfig(**cfg),
        model,
        tuple(x.shape[1:]),
        norm.mean,
        norm.std,
        "teacher.preprocess",
    )
    return (Preprocess(model, norm.mean, norm.std, resolved) if resolved else model), norm, resolved


def test_preprocess_gives_raw_imagenet_or_own_statistics():
    x = torch.rand(6, 3, 4, 4)
    raw, norm, _ = wrapped({"normalize": "none"}, x)
    raw(norm(x))
    torch.testing.assert_close(raw.model.x, x)  # the run's standardisation undone exactly
    imagenet, norm, resolved = wrapped({"normalize": "imagenet"}, x)
    imagenet(norm(x))
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(imagenet.model.x, (x - mean) / std)
    assert resolved == {
        "normalize": "imagenet",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "resize": None,
    }
    grey = torch.rand(6, 1, 4, 4)
    _, _, resolved = wrapped({"normalize": "imagenet"}, grey)
    assert resolved["mean"] == [pytest.approx(sum(IMAGENET_MEAN) / 3)]  # grey: the average
    own, norm, _ = wrapped({"normalize": {"mean": [0.5], "std": [0.25]}}, grey)
    own(norm(grey))
    torch.testing.assert_close(own.model.x, (grey - 0.5) / 0.25)
    same, _, resolved = wrapped({}, grey)
    assert resolved is None and isinstance(same, Seen)  # fit: no wrapper, today's behaviour


def test_resize_then_the_runs_statistics_again():
    x = torch.rand(5, 1, 8, 8)
    model, norm, resolved = wrapped({"resize": [16, 12]}, x)
    model(norm(x))
    assert model.model.x.shape == (5, 1, 16, 12) and resolved["normalize"] == "fit"
    up = torch.nn.functional.interpolate(x, size=(16, 12), mode="bilinear", align_corners=False)
    torch.testing.assert_close(model.model.x, norm(up))
    with pytest.raises(ConfigError, match="only images can be resized"):
        wrapped({"resize": [4, 4]}, torch.rand(5, 3))
    with pytest.raises(ConfigError, match="imagenet statistics are for images"):
        wrapped({"normalize": "imagenet"}, torch.rand(5, 3))
    with pytest.raises(ConfigError, match=r"normalize.mean: 2 values for data with 3"):
        wrapped({"normalize": {"mean": [0, 0], "std": [1, 1]}}, torch.rand(5, 3, 2, 2))


def test_from_model_reads_timm_and_transformers_configs(tmp_path):
    timm = pytest.importorskip("timm")
    transformers = pytest.importorskip("transformers")
    model = create_model("timm:test_resnet", (3, 8, 8), 3)
    _, _, resolved = wrapped({"from_model": True}, torch.rand(4, 3, 8, 8), model)
    cfg = timm.data.resolve_data_config(model=model)
    assert resolved["mean"] == pytest.approx(list(cfg["mean"]))
    assert (
        resolved["resize"] == list(cfg["input_size"][1:]) and resolved["normalize"] == "from_model"
    )
    # An explicit field wins over the model's own.
    _, _, mine = wrapped({"from_model": True, "resize": [8, 8]}, torch.rand(4, 3, 8, 8), model)
    assert mine["resize"] == [8, 8] and mine["mean"] == resolved["mean"]

    vit = transformers.ViTConfig(
        image_size=12,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        num_labels=3,
    )
    transformers.ViTForImageClassification(vit).save_pretrained(tmp_path / "vit")
    hf = create_model(f"hf:{tmp_path / 'vit'}", (3, 8, 8), 3)
    with pytest.raises(Exception, match="no image processor"):
        wrapped({"from_model": True}, torch.rand(4, 3, 8, 8), hf)
    transformers.ViTImageProcessor(
        size={"height": 12, "width": 12}, image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.2, 0.2]
    ).save_pretrained(tmp_path / "vit")
    model, norm, resolved = wrapped({"from_model": True}, torch.rand(4, 3, 8, 8), hf)
    assert resolved["resize"] == [12, 12] and resolved["mean"] == pytest.approx([0.5, 0.4, 0.3])
    assert model(norm(torch.rand(2, 3, 8, 8))).shape == (2, 3)  # ViT takes 12x12 only
    with pytest.raises(ConfigError, match="only timm: and hf: image models"):
        wrapped({"from_model": True}, torch.rand(4, 1, 8, 8), create_model("cnn", (1, 8, 8), 3))


# -- a loaded teacher trained on raw [0, 1] pixels -------------------------------------------


def fit_torch(model, x, y, epochs: int, lr: float = 3e-3, batch: int = 32):
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for b in range(0, len(y), batch):
            i = order[b : b + batch]
            loss = nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


CNN = ["teacher.model=cnn", "teacher.model_args={channels: [8, 16], hidden: 32}"]


@pytest.fixture(scope="module")
def raw_digits_teacher(tmp_path_factory):
    """A CNN trained outside kdlens on raw [0, 1] digits of the run's training split, and its own
    validation accuracy on raw pixels."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        ds = create_dataset("digits")
        split = make_split(ds, 0.1, 0.2, 0)
        tr, va = torch.as_tensor(split.train), torch.as_tensor(split.val)
        model = create_model("cnn", ds.input_shape, 10, channels=[8, 16], hidden=32)
        fit_torch(model, ds.x[tr], ds.y[tr], epochs=10)
        with torch.no_grad():
            own = float((model(ds.x[va]).argmax(1) == ds.y[va]).float().mean())
    finally:
        torch.set_num_threads(before)
    path = tmp_path_factory.mktemp("raw") / "raw_cnn.safetensors"
    save_weights(model, path)
    return path, own


@pytest.mark.usefixtures("single_thread")
def test_a_loaded_teacher_keeps_its_own_accuracy_when_fed_raw_inputs(tmp_path, raw_digits_teacher):
    from kdlens.pipeline import prepare
    from kdlens.run.teachers import WeakTeacherError

    path, own = raw_digits_teacher
    assert own > 0.9
    base = [*CNN, f"teacher.checkpoint={path}", *CORE_ONLY]
    ctx = prepare(load_config(SMOKE, [*base, "teacher.preprocess.normalize=none"]), tmp_path / "a")
    found = ctx.loaded_teacher
    assert abs(found["loaded_val_accuracy"] - own) <= 0.005
    assert found["preprocess"]["normalize"] == "none" and found["chance"] == pytest.approx(0.1)
    try:  # fed the run's standardisation instead: refused as weak, or clearly worse
        fit = prepare(load_config(SMOKE, base), tmp_path / "b").loaded_teacher
        assert fit["loaded_val_accuracy"] < own - 0.05
    except WeakTeacherError:
        pass
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # prepare writes nothing


def one_line_exit_2(capsys, args) -> str:
    from kdlens.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdlens: error: ") and "\n" not in err and "Traceback" not in err
    return err


def cli(out, *overrides, config=SMOKE):
    args = ["run", "--config", str(config), "--out", str(out), "--quiet"]
    for o in [*CORE_ONLY, *overrides]:
        args += ["--set", o]
    return args


def test_a_weak_loaded_teacher_stops_the_run_in_one_line(tmp_path, capsys):
    model = create_model("mlp", (1, 8, 8), 10, hidden=[8])
    for p in model.parameters():
        nn.init.zeros_(p)
    model[-1].bias.data[3] = 1.0  # always "3": a teacher fed inputs it cannot read
    save_weights(model, tmp_path / "blind.safetensors")
    weak = ["teacher.model=mlp", "teacher.model_args={hidden: [8]}"]
    weak.append(f"teacher.checkpoint={tmp_path / 'blind.safetensors'}")
    err = one_line_exit_2(capsys, cli(tmp_path / "run", *weak))
    assert "below 1.5x chance (15.0% for 10 classes)" in err and "teacher.preprocess" in err
    assert "teacher.accept_weak=true" in err and not (tmp_path / "run").exists()
    from kdlens.pipeline import prepare

    config = load_config(SMOKE, [*weak, "teacher.accept_weak=true", *CORE_ONLY])
    assert prepare(config, tmp_path / "run").loaded_teacher["loaded_val_accuracy"] < 0.15


# -- a teacher known only by its saved logits ------------------------------------------------


def test_batches_carry_each_rows_dataset_index_into_every_process_share():
    x, y = torch.arange(20.0)[:, None], torch.arange(20) % 2
    source = torch.arange(100, 120)  # the rows' indices in a larger dataset
    norm = Normalizer(torch.zeros(1), torch.ones(1))
    for rank in (0, 1):
        loader = BatchLoader(
            x, y, norm, 8, shuffle=True, seed=3, source_index=source, rank=rank, world_size=2
        )
        for batch in loader:
            assert torch.equal(batch.source_index, 100 + batch.x[:, 0].long())
            assert torch.equal(batch.source_index, source[batch.index])
    assert next(iter(BatchLoader(x, y, norm, 8))).source_index is None


def test_a_logits_teacher_teaches_by_dataset_row(tmp_path):
    from kdlens.distill import compute_logits, create_distiller

    logits = torch.randn(20, 3)
    np.save(tmp_path / "t.npy", logits.numpy())
    teacher = create_model(f"logits:{tmp_path / 't.npy'}", (4,), 3, num_examples=20)
    x, y = torch.randn(6, 4), torch.zeros(6, dtype=torch.long)
    rows = torch.tensor([5, 9, 0, 19, 3, 3])
    norm = Normalizer(torch.zeros(4), torch.ones(4))
    loader = BatchLoader(x, y, norm, 4, source_index=rows)
    torch.testing.assert_close(compute_logits(teacher, loader), logits[rows])
    kd = create_distiller("kd", nn.Linear(4, 3), teacher, temperature=2.0, alpha=0.0)
    batch = next(iter(loader))
    torch.testing.assert_close(kd.teacher_logits(batch), logits[rows[:4]])
    with pytest.raises(Exception, match="has rows only for its own dataset"):
        kd.teacher_logits(next(iter(BatchLoader(x, y, norm, 4))))


@pytest.fixture
def digits_logits(tmp_path):
    """A teacher's logits for every row of `digits`, in its order: a noisy copy of the labels."""
    ds = create_dataset("digits")
    g = torch.Generator().manual_seed(0)
    logits = 4 * nn.functional.one_hot(ds.y, 10).float() + torch.randn(len(ds), 10, generator=g)
    np.save(tmp_path / "digits_logits.npy", logits.numpy())
    return tmp_path / "digits_logits.npy"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["student.train.augment.shift=1"],
            "student.train.augment (shift 1): a logits: teacher has answers only for the "
            "un-augmented examples of its dataset",
        ),
        (["student.train.augment.mixup=0.2"], "student.train.augment (mixup 0.2)"),
        (["distill.transfer.dataset=mnist5k"], "answers only for the examples of its own dataset"),
        (["distill.method=fitnets"], "needs the teacher's features; a logits: teacher has only"),
        (
            ["readable.students=[tree]", "readable.transfer=augmented"],
            "readable.transfer: a logits: teacher cannot label augmented copies",
        ),
    ],
)
def test_a_logits_teacher_refuses_what_it_has_no_answers_for(
    tmp_path, capsys, digits_logits, overrides, message
):
    err = one_line_exit_2(
        capsys, cli(tmp_path / "run", f"teacher.model=logits:{digits_logits}", *overrides)
    )
    assert message in err and not (tmp_path / "run").exists()


@pytest.mark.usefixtures("single_thread")
def test_distilling_from_logits_uses_them_for_the_split_rows(tmp_path, digits_logits):
    from kdlens.pipeline import run

    config = load_config(
        SMOKE, [f"teacher.model=logits:{digits_logits}", "distill.transfer.holdout=0.5", *CORE_ONLY]
    )
    metrics = run(config, tmp_path / "run")
    saved = torch.as_tensor(np.load(digits_logits))
    ds = create_dataset("digits")
    split = make_split(ds, 0.1, 0.2, 0)
    test = torch.as_tensor(split.test)
    expected = float((saved[test].argmax(1) == ds.y[test]).float().mean())
    assert metrics["models"]["teacher"]["accuracy"] == pytest.approx(expected)
    assert metrics["models"]["teacher"]["loaded_val_accuracy"] > 0.9


# -- bad assets through `kdlens run`: one line, exit 2, nothing written ----------------------


def test_bad_assets_are_one_line_naming_the_file_or_field(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    # A text column without an hf: teacher.
    import pandas as pd

    pd.DataFrame({"review": ["good", "bad"] * 10, "label": ["p", "n"] * 10}).to_csv(
        tmp_path / "r.csv", index=False
    )
    err = one_line_exit_2(
        capsys, cli(out, "data.name=csv:r.csv", "data.target=label", "data.text=review")
    )
    assert "data.text needs an hf: teacher" in err
    # A pretrained model that is not in the cache.
    if __import__("importlib").util.find_spec("timm"):
        err = one_line_exit_2(
            capsys,
            cli(
                out,
                "teacher.model=timm:test_resnet",
                f"teacher.model_args={{pretrained: true, cache_dir: {tmp_path / 'hub'}}}",
            ),
        )
        assert str(tmp_path / "hub") in err and "kdlens does not download" in err
    # Logits whose rows or classes do not match the data.
    np.save(tmp_path / "short.npy", np.zeros((100, 10), dtype=np.float32))
    err = one_line_exit_2(capsys, cli(out, f"teacher.model=logits:{tmp_path / 'short.npy'}"))
    assert "short.npy has 100 rows but the dataset has 1797 examples" in err
    np.save(tmp_path / "wide.npy", np.zeros((1797, 12), dtype=np.float32))
    err = one_line_exit_2(capsys, cli(out, f"teacher.model=logits:{tmp_path / 'wide.npy'}"))
    assert "wide.npy has 12 columns (classes) but the data has 10 classes" in err
    # A factory that raises.
    (tmp_path / "my_nets_kd.py").write_text(
        "def broken(input_shape, num_classes):\n    raise ValueError('no such layer size')\n"
    )
    err = one_line_exit_2(capsys, cli(out, "student.model=import:my_nets_kd:broken"))
    assert "the factory my_nets_kd.broken raised ValueError: no such layer size" in err
    assert not out.exists()


def test_trust_pickle_is_the_cli_flag_for_joblib_teachers(tmp_path, capsys):
    import joblib
    from sklearn.linear_model import LogisticRegression

    from kdlens.cli import main

    ds = create_dataset("wine")
    model = LogisticRegression(max_iter=2000).fit(ds.x.numpy(), ds.y.numpy())
    joblib.dump(model, tmp_path / "lr.joblib")
    base = cli(
        tmp_path / "run",
        f"teacher.model=sklearn:{tmp_path / 'lr.joblib'}",
        "data.name=wine",
        "student.model_args={hidden: [8]}",
    )
    err = one_line_exit_2(capsys, base)
    assert "lr.joblib is a pickle" in err and "--trust-pickle" in err
    assert main([*base, "--trust-pickle"]) == 0
    assert (tmp_path / "run" / "metrics.json").is_file()
    err = one_line_exit_2(capsys, [*cli(tmp_path / "other"), "--trust-pickle"])
    assert "--trust-pickle: the teacher is not an sklearn: model" in err


@pytest.mark.usefixtures("single_thread")
def test_a_student_with_its_own_preprocessing_is_rebuilt_from_the_run_folder(tmp_path):
    from kdlens.distill import compute_logits
    from kdlens.evaluate.metrics import accuracy
    from kdlens.pipeline import run
    from kdlens.run import load_run

    config = load_config(
        SMOKE,
        ["student.preprocess.normalize=none", "student.preprocess.resize=[12, 12]", *CORE_ONLY],
    )
    metrics = run(config, tmp_path / "run")
    reopened = load_run(tmp_path / "run")
    assert reopened.records["kd"].spec["preprocess"]["resize"] == [12, 12]
    kd = reopened.load_model("kd")
    assert isinstance(kd, Preprocess)
    # The weights file is the bare model's: it loads into the student architecture at 12x12.
    from kdlens.weights import load_weights

    bare = create_model("mlp", (1, 12, 12), 10, hidden=[32])
    load_weights(bare, tmp_path / "run" / reopened.records["kd"].weights)
    loader = reopened.loader("test")
    assert accuracy(compute_logits(kd, loader), loader.y) == pytest.approx(
        metrics["models"]["kd"]["accuracy"]
    )


def test_augmentation_is_for_images_only():
    from kdlens.run.inputs import image_only_augmentation

    config = load_config(SMOKE, ["teacher.train.augment.mixup=0.3"])
    same, notes = image_only_augmentation(config, "image")
    assert same is config and notes == []
    table, notes = image_only_augmentation(config, "tabular")
    assert table.teacher.train.augment.shift == 0 and table.teacher.train.augment.mixup == 0
    assert notes == [
        "teacher.train.augment (shift 1, mixup 0.3) applies to images only; not used on "
        "tabular data"
    ]


def test_timm_pretrained_weights_from_a_local_file(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from kdlens.errors import CheckpointError

    source = timm.create_model("test_resnet")  # stands in for weights downloaded elsewhere
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    model = create_model(
        "timm:test_resnet",
        (1, 8, 8),
        3,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(tmp_path / "w.safetensors")},
    )
    ours, theirs = model.state_dict(), source.state_dict()
    deep = [k for k in ours if k.startswith("layer") and k.endswith("conv1.weight")]
    assert deep and all(torch.equal(ours[k], theirs[k]) for k in deep)
    with pytest.raises(CheckpointError, match=r"none.safetensors not found \(model_args"):
        create_model(
            "timm:test_resnet",
            (1, 8, 8),
            3,
            pretrained=True,
            pretrained_cfg_overlay={"file": str(tmp_path / "none.safetensors")},
        )


def test_a_wrapped_models_weights_are_its_own():
    """A run's weights file loads into the bare model (another run's teacher.checkpoint) and back;
    inner models whose own keys start with ``model.`` (transformers) too."""
    inner = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    outer = nn.Module()
    outer.model = inner  # keys "model.0.weight", ...
    x = torch.rand(8, 4)
    norm = Normalizer.fit(x)
    resolved = {"normalize": "none", "mean": None, "std": None, "resize": None}
    wrapped = Preprocess(outer, norm.mean, norm.std, resolved)
    assert list(wrapped.state_dict()) == list(outer.state_dict())
    fresh = nn.Module()
    fresh.model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    again = Preprocess(fresh, norm.mean, norm.std, resolved)
    again.load_state_dict(wrapped.state_dict())
    assert torch.equal(again.model.model[0].weight, inner[0].weight)
    holder = nn.Module()
    holder.student = again  # nested, as in a Distiller
    assert "student.model.0.weight" in holder.state_dict()
    holder.load_state_dict(holder.state_dict())


def test_teacher_and_student_see_the_same_augmented_example_each_as_it_expects():
    from kdlens.config import AugmentConfig
    from kdlens.distill import create_distiller

    x = torch.rand(16, 1, 6, 6)
    norm = Normalizer.fit(x)
    teacher, _, _ = wrapped({"normalize": "none", "resize": [8, 8]}, x, Seen())
    student = Seen()
    kd = create_distiller("kd", student, teacher, temperature=2.0, alpha=0.0)
    augment = AugmentConfig(shift=1, flip=True)
    batch = next(iter(BatchLoader(x, torch.zeros(16, dtype=torch.long), norm, 8, augment=augment)))
    kd(batch)
    raw = batch.x * norm.std + norm.mean  # the augmented example, as the data held it
    assert not torch.allclose(raw, x[:8])  # it was augmented
    resized = nn.functional.interpolate(raw, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(teacher.model.x, resized)  # raw pixels at its own size
    torch.testing.assert_close(student.x, batch.x)  # the run's standardisation
