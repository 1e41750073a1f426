"""Transfer sets, cross-domain data and the omitted-class experiment."""

import pytest
import torch

from kdlens.config import load_config
from kdlens.data import DATASETS, Dataset
from kdlens.distill.transfer import (
    holdout_indices,
    resize_images,
    student_tensors,
    teacher_tensors,
)
from kdlens.errors import ConfigError, KdlensError
from kdlens.evaluate.omitted import best_bias_shift, class_recall, omitted_class_report
from tests.conftest import SMOKE


def _digits16(root=None, download=False):
    """scikit-learn's digits drawn at 16x16: a second, differently sized image dataset that
    loads in milliseconds (mnist5k takes long on a busy CPU)."""
    from kdlens.data import create_dataset

    d = create_dataset("digits")
    return Dataset("digits16", resize_images(d.x, (1, 16, 16)), d.y, "image", d.class_names)


if "digits16" not in DATASETS:
    DATASETS.register("digits16")(_digits16)

FAST = [
    "teacher.train.epochs=1",
    "teacher.train.max_batches=2",
    "student.train.epochs=1",
    "student.train.max_batches=2",
]


def _ctx(tmp_path, overrides):
    from kdlens.pipeline import prepare

    return prepare(load_config(SMOKE, overrides), tmp_path / "run")


def test_resize_images_crops_resizes_and_pads():
    x = torch.zeros(2, 1, 28, 28)
    x[:, :, 4:24, 4:24] = 1.0  # a 20x20 "digit" inside a 4-pixel border, as in MNIST
    small = resize_images(x, (1, 8, 8), crop=4)
    assert small.shape == (2, 1, 8, 8) and torch.allclose(small, torch.ones_like(small))
    big = resize_images(small, (1, 28, 28), pad=4)
    assert big.shape == (2, 1, 28, 28)
    assert big[:, :, :4].abs().sum() == 0 and torch.allclose(
        big[:, :, 4:24, 4:24], x[:, :, 4:24, 4:24]
    )
    with pytest.raises(KdlensError, match="channels"):
        resize_images(torch.zeros(1, 3, 8, 8), (1, 8, 8))


def test_holdout_keeps_the_students_data_from_the_teacher(tmp_path):
    ctx = _ctx(
        tmp_path,
        ["distill.transfer.holdout=0.4", "distill.alpha=0", "distill.transfer.labels=false"],
    )
    teacher_part, student_part = holdout_indices(ctx)
    assert not set(teacher_part) & set(student_part)
    assert sorted(teacher_part + student_part) == ctx.split.train
    assert len(student_part) == pytest.approx(0.4 * len(ctx.split.train), abs=2)
    assert len(teacher_tensors(ctx)[1]) == len(teacher_part)
    assert len(student_tensors(ctx)[1]) == len(student_part)


def test_another_dataset_is_resized_to_the_runs_shape(tmp_path):
    ctx = _ctx(
        tmp_path,
        [
            "distill.transfer.dataset=digits16",
            "distill.transfer.crop=2",
            "distill.transfer.limit=300",
        ],
    )
    x, y = student_tensors(ctx)
    assert x.shape == (300, 1, 8, 8) and y.shape == (300,)
    assert 0 <= float(x.min()) and float(x.max()) <= 1


def test_exclude_classes_removes_them_from_the_transfer_set(tmp_path):
    ctx = _ctx(tmp_path, ["distill.exclude_classes=[3, 5]"])
    _, y = student_tensors(ctx)
    assert not torch.isin(y, torch.tensor([3, 5])).any()
    assert len(y) == int((~torch.isin(ctx.tensors("train")[1], torch.tensor([3, 5]))).sum())
    with pytest.raises(ConfigError, match="exclude_classes"):
        _ctx(tmp_path, ["distill.exclude_classes=[10]"])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["distill.transfer.labels=false", "distill.alpha=0.1"], "alpha"),
        (["distill.transfer.dataset=wine"], "only image datasets"),
        (["distill.transfer.dataset=digitz"], "did you mean 'digits'"),
        (["distill.transfer.holdout=0.5", "distill.transfer.dataset=digits16"], "choose one"),
    ],
)
def test_bad_transfer_settings_fail_before_training(tmp_path, overrides, message):
    with pytest.raises(KdlensError, match=message):
        _ctx(tmp_path, overrides)
    assert not (tmp_path / "run").exists()


def test_bias_shift_and_recall_golden():
    # Class 2 is never predicted; a shift in (1, 1.5) fixes example 2 and breaks no other.
    logits = torch.tensor([[3.0, 0.0, 1.0], [0.0, 2.0, 0.5], [1.0, 0.0, 0.0], [1.0, 0.0, -2.0]])
    labels = torch.tensor([0, 1, 2, 0])
    assert class_recall(logits, labels, [2]) == 0.0
    assert class_recall(logits, labels, [7]) is None
    assert best_bias_shift(logits, labels, [2]) == pytest.approx(1.25)  # smallest shift > 1
    report = omitted_class_report(logits, labels, logits, labels, [2])
    assert report["omitted_recall"] == 0.0 and report["omitted_recall_corrected"] == 1.0
    assert report["accuracy"] == 0.75 and report["accuracy_corrected"] == 1.0


def test_a_cross_domain_mixup_run_reports_the_omitted_class(tmp_path):
    """One run, three features: another dataset as transfer set, mixup samples, no 3s."""
    from kdlens.pipeline import run

    overrides = [
        *FAST,
        "distill.transfer.dataset=digits16",
        "distill.transfer.limit=256",
        "student.train.augment.mixup=0.4",
        "distill.exclude_classes=[3]",
    ]
    metrics = run(load_config(SMOKE, overrides), tmp_path / "r")
    assert 0 <= metrics["models"]["kd"]["accuracy"] <= 1
    report = metrics["omitted_classes"]
    assert report["classes"] == [3]
    for name in ("scratch", "kd"):
        m = report["models"][name]
        assert 0 <= m["omitted_recall"] <= m["omitted_recall_corrected"] <= 1
        assert m["bias_shift"] >= 0
    assert set(report["models"]["teacher"]) == {"omitted_recall", "accuracy"}
