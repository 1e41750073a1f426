import pytest
import torch
from torch import nn

from kdlens.config import AugmentConfig, TrainConfig
from kdlens.data import BatchLoader, Normalizer
from kdlens.distill import Distiller, KDDistiller, compute_logits, create_distiller, list_distillers
from kdlens.train import fit


def _data(n=96, k=3):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = torch.arange(n) % k
    return x, y


def _models(k=3):
    torch.manual_seed(0)
    teacher = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(256, k),
    )
    student = nn.Sequential(nn.Flatten(), nn.Linear(64, k))
    return teacher, student


def test_registry_lists_kd():
    assert "kd" in list_distillers()


def test_teacher_is_frozen_through_training():
    x, y = _data()
    teacher, student = _models()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distiller = KDDistiller(student, teacher, temperature=4.0, alpha=0.5)
    distiller.train()
    assert not teacher.training  # eval mode even when the distiller trains
    assert all(not p.requires_grad for p in teacher.parameters())
    norm = Normalizer.fit(x)
    cfg = TrainConfig(epochs=2, batch_size=16, lr=1e-2)
    loader = BatchLoader(x, y, norm, 16, shuffle=True, augment=AugmentConfig(shift=1), seed=0)
    student_before = [p.clone() for p in student.parameters()]
    fit(distiller, loader, BatchLoader(x, y, norm, 32), cfg)
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key  # weights and batch-norm statistics unchanged
    assert any(
        not torch.equal(a, b) for a, b in zip(student_before, student.parameters(), strict=True)
    )
    assert distiller.trainable_parameters() == list(student.parameters())


def test_teacher_sees_exactly_the_augmented_batch_the_student_sees():
    x, y = _data()
    teacher, student = _models()
    seen = {}
    teacher.register_forward_hook(lambda m, inp, out: seen.__setitem__("teacher", inp[0].clone()))
    student.register_forward_hook(lambda m, inp, out: seen.__setitem__("student", inp[0].clone()))
    distiller = KDDistiller(student, teacher)
    loader = BatchLoader(
        x,
        y,
        Normalizer.fit(x),
        16,
        shuffle=True,
        augment=AugmentConfig(shift=2, flip=True, mixup=0.4),
        num_classes=3,
        seed=1,
    )
    batch = next(iter(loader))
    distiller(batch)
    assert torch.equal(seen["teacher"], seen["student"])
    assert not torch.equal(batch.x, Normalizer.fit(x)(x[batch.index]))  # it really was augmented


def test_cached_and_live_teacher_give_the_same_loss():
    x, y = _data()
    teacher, student = _models()
    norm = Normalizer.fit(x)
    live = KDDistiller(student, teacher, temperature=3.0, alpha=0.2)
    cached = KDDistiller(student, teacher, temperature=3.0, alpha=0.2)
    cached.set_teacher_cache(compute_logits(teacher, BatchLoader(x, y, norm, 40)))
    for batch in BatchLoader(x, y, norm, 16, shuffle=True, seed=3):
        a, b = live(batch), cached(batch)
        assert a["loss"].item() == pytest.approx(b["loss"].item(), rel=1e-5)
        assert a["kd"].item() == pytest.approx(b["kd"].item(), rel=1e-5)


def test_scratch_distiller_is_plain_cross_entropy():
    x, y = _data()
    _, student = _models()
    batch = next(iter(BatchLoader(x, y, Normalizer.fit(x), 16)))
    out = Distiller(student)(batch)
    expected = nn.functional.cross_entropy(student(batch.x), batch.y)
    assert out["loss"].item() == pytest.approx(expected.item())


def test_create_distiller_unknown_method_suggests():
    from kdlens.errors import ConfigError

    teacher, student = _models()
    with pytest.raises(ConfigError, match="did you mean 'kd'"):
        create_distiller("kdd", student, teacher)
