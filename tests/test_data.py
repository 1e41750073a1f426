import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from kdlens.config import AugmentConfig
from kdlens.data import BatchLoader, Normalizer, create_dataset, list_datasets, make_split
from kdlens.data.transforms import mixup, random_shift
from kdlens.errors import DataError


def test_registry_lists_embedded_and_torchvision():
    names = list_datasets()
    for name in (
        "mnist5k",
        "digits",
        "breast_cancer",
        "wine",
        "mnist",
        "fashion_mnist",
        "cifar10",
        "cifar100",
    ):
        assert name in names


@pytest.mark.parametrize(
    "name, shape, k, n",
    [
        ("mnist5k", (1, 28, 28), 10, 5000),
        ("digits", (1, 8, 8), 10, 1797),
        ("breast_cancer", (30,), 2, 569),
        ("wine", (13,), 3, 178),
    ],
)
def test_embedded_datasets(name, shape, k, n):
    ds = create_dataset(name)
    assert ds.input_shape == shape and ds.num_classes == k and len(ds) == n
    if ds.kind == "image":
        assert 0.0 <= ds.x.min() and ds.x.max() <= 1.0
    else:
        assert len(ds.feature_names) == shape[0]


def test_split_is_deterministic_stratified_and_disjoint():
    ds = create_dataset("digits")
    a = make_split(ds, 0.1, 0.2, seed=3)
    b = make_split(ds, 0.1, 0.2, seed=3)
    c = make_split(ds, 0.1, 0.2, seed=4)
    assert a == b and a != c
    parts = [set(a.train), set(a.val), set(a.test)]
    assert sum(map(len, parts)) == len(ds) and not (parts[0] & parts[1] or parts[0] & parts[2])
    assert len(a.test) == pytest.approx(0.2 * len(ds), abs=2)
    share = torch.bincount(ds.y[a.test], minlength=10).float() / len(a.test)
    overall = torch.bincount(ds.y, minlength=10).float() / len(ds)
    assert (share - overall).abs().max() < 0.02


def test_split_limit_keeps_stratified_subset():
    ds = create_dataset("digits")
    s = make_split(ds, 0.2, 0.2, seed=0, limit=300)
    assert len(s.train) + len(s.val) + len(s.test) == 300


def test_normalizer_uses_training_statistics_only():
    x = torch.cat([torch.zeros(10, 2), torch.full((10, 2), 4.0)])
    norm = Normalizer.fit(x[:10] + torch.arange(10.0)[:, None])
    z = norm(x[:10] + torch.arange(10.0)[:, None])
    assert z.mean(0).abs().max() < 1e-5 and (z.std(0) - 1).abs().max() < 1e-5
    const = Normalizer.fit(torch.ones(5, 3))
    assert torch.isfinite(const(torch.ones(2, 3))).all()


def test_random_shift_moves_each_image_by_its_own_offset():
    x = torch.zeros(64, 1, 10, 10)
    x[:, 0, 4:6, 4:6] = 1.0  # a blob in the middle, away from the border
    g = torch.Generator().manual_seed(0)
    out = random_shift(x, 2, g)
    assert out.shape == x.shape
    assert torch.allclose(out.sum((1, 2, 3)), x.sum((1, 2, 3)))  # content kept, only moved
    centres = [tuple(torch.nonzero(o[0])[0].tolist()) for o in out]
    assert len(set(centres)) > 5  # not one shift for the whole batch
    assert all(2 <= r <= 6 and 2 <= c <= 6 for r, c in centres)
    assert torch.equal(random_shift(x, 0, g), x)


def test_mixup_targets_are_distributions():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 1, 4, 4), torch.arange(32) % 4
    mixed, target = mixup(x, y, 4, 0.4, g)
    assert mixed.shape == x.shape and target.shape == (32, 4)
    assert torch.allclose(target.sum(-1), torch.ones(32))


def test_loader_repeats_from_seed_and_covers_the_split():
    x, y = torch.rand(50, 1, 6, 6), torch.arange(50) % 5
    norm = Normalizer.fit(x)
    aug = AugmentConfig(shift=1, flip=True)
    first = [b.x for b in BatchLoader(x, y, norm, 16, True, aug, 5, seed=7)]
    again = [b.x for b in BatchLoader(x, y, norm, 16, True, aug, 5, seed=7)]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    idx = torch.cat([b.index for b in BatchLoader(x, y, norm, 16, shuffle=True, seed=1)])
    assert sorted(idx.tolist()) == list(range(50))
    assert len(BatchLoader(x, y, norm, 16, max_batches=2)) == 2


def _write_idx(path, array, magic):
    with gzip.open(path, "wb") if str(path).endswith(".gz") else open(path, "wb") as f:
        f.write(struct.pack(">I", magic))
        for dim in array.shape:
            f.write(struct.pack(">I", dim))
        f.write(array.astype(np.uint8).tobytes())


def test_torchvision_mnist_from_tiny_local_files(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), 2051)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, 2049)
    ds = create_dataset("mnist", root=str(tmp_path))
    assert ds.input_shape == (1, 28, 28) and len(ds) == 60 and ds.num_classes == 10
    assert int(ds.is_test.sum()) == 20
    split = make_split(ds, 0.25, 0.2, seed=0)
    assert sorted(split.test) == list(range(40, 60))  # the official test set stays the test set


def test_torchvision_cifar10_from_tiny_local_files(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)

    def batch(n):
        return {
            "data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
            "labels": list(np.arange(n) % 10),
        }

    for i in range(1, 6):
        pickle.dump(batch(10), open(folder / f"data_batch_{i}", "wb"))
    pickle.dump(batch(10), open(folder / "test_batch", "wb"))
    pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, open(folder / "batches.meta", "wb"))
    # The tiny files are in torchvision's format but cannot match the real archive's checksums.
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)
    ds = create_dataset("cifar10", root=str(tmp_path))
    assert ds.input_shape == (3, 32, 32) and len(ds) == 60 and ds.class_names[3] == "c3"


def test_missing_torchvision_data_gives_one_line_error(tmp_path):
    with pytest.raises(DataError) as info:
        create_dataset("fashion_mnist", root=str(tmp_path))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "FashionMNIST" / "raw") in message
    assert "download" in message


def test_bad_labels_and_nan_are_rejected():
    from kdlens.data import Dataset, check_dataset

    good = Dataset("t", torch.rand(4, 2), torch.tensor([0, 1, 0, 1]), "tabular", ["a", "b"])
    check_dataset(good)
    with pytest.raises(DataError, match="NaN"):
        check_dataset(
            Dataset("t", torch.tensor([[float("nan"), 0.0]] * 4), good.y, "tabular", ["a", "b"])
        )
    with pytest.raises(DataError, match="labels must lie"):
        check_dataset(Dataset("t", good.x, torch.tensor([0, 1, 2, 1]), "tabular", ["a", "b"]))
