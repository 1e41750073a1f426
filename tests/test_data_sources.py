"""Users' own data: image folders, CSV / Parquet tables and Hugging Face datasets folders.

Every fixture writes real files into tmp_path (PNGs of scikit-learn's digits, a CSV, a Parquet
file, ``save_to_disk`` folders); nothing is downloaded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from kdlens.data import create_dataset, make_split
from kdlens.data.base import TEST, TRAIN
from kdlens.errors import ConfigError, DataError

WORDS = ["zero", "one", "two"]  # class folder names; sorted they are one, two, zero
PER_CLASS = 24


def one_line(info) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture(scope="module")
def digit_pixels() -> dict[str, np.ndarray]:
    """class word -> (PER_CLASS, 8, 8) uint8 digits, as written to the PNGs."""
    d = load_digits()
    out = {}
    for label, word in enumerate(WORDS):
        images = d.images[d.target == label][:PER_CLASS]
        out[word] = np.round(images / 16 * 255).astype(np.uint8)
    return out


def write_folder(root, pixels: dict[str, np.ndarray], rows=slice(None)) -> None:
    from PIL import Image

    for word, images in pixels.items():
        (root / word).mkdir(parents=True)
        for i, img in enumerate(images[rows]):
            Image.fromarray(img, mode="L").save(root / word / f"{i:03d}.png")


def expected_pixels(pixels, rows=slice(None)) -> torch.Tensor:
    """(N, 1, 8, 8) in ImageFolder's order: classes sorted by name, files by name."""
    stacked = [pixels[w][rows] for w in sorted(pixels)]
    return torch.as_tensor(np.concatenate(stacked)[:, None] / 255.0, dtype=torch.float32)


@pytest.fixture
def image_folder(tmp_path, digit_pixels):
    root = tmp_path / "digits"
    write_folder(root, digit_pixels)
    return root


@pytest.fixture
def split_image_folder(tmp_path, digit_pixels):
    root = tmp_path / "digits_split"
    write_folder(root / "train", digit_pixels, slice(0, 18))
    write_folder(root / "test", digit_pixels, slice(18, None))
    return root


# --- imagefolder: ------------------------------------------------------------------------------


def test_image_folder_reads_pixels_and_class_names(image_folder, digit_pixels):
    ds = create_dataset(f"imagefolder:{image_folder}")
    assert ds.kind == "image" and ds.class_names == ["one", "two", "zero"]
    assert ds.input_shape == (1, 8, 8) and ds.fixed_split is None and ds.skipped_files == []
    assert torch.allclose(ds.x, expected_pixels(digit_pixels), atol=1e-6)
    assert ds.y.tolist() == [0] * PER_CLASS + [1] * PER_CLASS + [2] * PER_CLASS


def test_image_folder_resizes_and_converts_channels(image_folder):
    ds = create_dataset(f"imagefolder:{image_folder}", image_size=(16, 12), channels=3)
    assert ds.input_shape == (3, 16, 12)
    assert torch.equal(ds.x[:, 0], ds.x[:, 1]) and torch.equal(ds.x[:, 1], ds.x[:, 2])  # grey
    assert 0 <= float(ds.x.min()) and float(ds.x.max()) <= 1


def test_image_folder_train_test_subfolders_are_the_split(split_image_folder, digit_pixels):
    ds = create_dataset(f"imagefolder:{split_image_folder}")
    assert ds.class_names == ["one", "two", "zero"] and len(ds) == 3 * PER_CLASS
    n_train = 3 * 18
    assert ds.fixed_split.tolist() == [TRAIN] * n_train + [TEST] * (3 * (PER_CLASS - 18))
    test_part = ds.x[ds.fixed_split == TEST]
    assert torch.allclose(test_part, expected_pixels(digit_pixels, slice(18, None)), atol=1e-6)
    split = make_split(ds, 0.1, 0.2, seed=0)
    assert split.test == list(range(n_train, len(ds)))  # the folder's test set, whole
    assert set(split.val) < set(range(n_train))  # val is carved from train/
    assert sorted(split.train + split.val) == list(range(n_train))


def test_image_folder_val_subfolder_is_kept(tmp_path, digit_pixels):
    root = tmp_path / "three"
    write_folder(root / "train", digit_pixels, slice(0, 16))
    write_folder(root / "val", digit_pixels, slice(16, 20))
    write_folder(root / "test", digit_pixels, slice(20, None))
    split = make_split(create_dataset(f"imagefolder:{root}"), 0.1, 0.2, seed=0)
    assert (len(split.train), len(split.val), len(split.test)) == (48, 12, 12)
    assert split.val == list(range(48, 60)) and split.test == list(range(60, 72))


def test_corrupt_image_is_named_or_skipped_and_counted(image_folder, digit_pixels):
    (image_folder / "two" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    with pytest.raises(DataError) as info:
        create_dataset(f"imagefolder:{image_folder}")
    assert f"image {image_folder / 'two' / 'broken.png'} cannot be read" in one_line(info)
    assert "data.skip_bad_files" in str(info.value)
    ds = create_dataset(f"imagefolder:{image_folder}", skip_bad_files=True)
    assert ds.skipped_files == [str(image_folder / "two" / "broken.png")]
    assert len(ds) == 3 * PER_CLASS
    assert torch.allclose(ds.x, expected_pixels(digit_pixels), atol=1e-6)


def test_empty_class_folder_and_missing_folder_are_named(image_folder, tmp_path):
    (image_folder / "three").mkdir()
    (image_folder / "three" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError) as info:
        create_dataset(f"imagefolder:{image_folder}")
    assert f"class folder {image_folder / 'three'} has no images" in one_line(info)
    with pytest.raises(DataError, match="image folder not found"):
        create_dataset(f"imagefolder:{tmp_path / 'nowhere'}")


# --- csv: and parquet: -------------------------------------------------------------------------


def animals(n: int = 60, seed: int = 0):
    """A table a small model can learn: the species follows size and colour."""
    import pandas as pd

    g = np.random.default_rng(seed)
    species = np.array(["cat", "dog", "emu"])[np.arange(n) % 3]
    color = np.where(species == "emu", "grey", np.where(g.random(n) < 0.8, "red", "blue"))
    size = np.where(species == "dog", 3.0, 1.0) + g.normal(0, 0.2, n)
    weight = size * 2 + g.normal(0, 0.1, n)
    return pd.DataFrame({"size": size, "color": color, "weight": weight, "species": species})


@pytest.fixture
def csv_file(tmp_path):
    frame = animals()
    frame.loc[7, "weight"] = np.nan
    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)
    return path


def test_csv_missing_value_is_refused_naming_the_column(csv_file):
    with pytest.raises(DataError) as info:
        create_dataset(f"csv:{csv_file}", target="species")
    assert "column 'weight' has 1 missing value (first in row 8); fill it" in one_line(info)
    assert "data.impute: median" in str(info.value)


def test_csv_labels_one_hot_and_median_from_the_training_split(csv_file):
    import pandas as pd

    ds = create_dataset(f"csv:{csv_file}", target="species", impute="median")
    assert ds.kind == "tabular" and ds.class_names == ["cat", "dog", "emu"]
    assert ds.y.tolist() == [0, 1, 2] * 20
    train = [i for i in range(60) if i % 5 != 0]  # the rows the encoder may learn from
    ready = ds.prepare(train)
    assert ready.feature_names == ["size", "color=blue", "color=grey", "color=red", "weight"]
    frame = pd.read_csv(csv_file)
    assert ready.x[7, 4] == pytest.approx(float(frame["weight"].iloc[train].median()))
    assert ready.x[7, 4] != pytest.approx(float(frame["weight"].median()))  # not all rows'
    assert torch.allclose(ready.x[:, 0], torch.tensor(frame["size"].values, dtype=torch.float32))
    onehot = ready.x[:, 1:4]
    assert torch.equal(onehot.sum(1), torch.ones(60))
    assert ready.x[2, 2] == 1  # row 2 is an emu, grey
    # The state is JSON and re-applies exactly, without fitting (what kdlens report does).
    state = json.loads(json.dumps(ready.state_dict()))
    assert state["medians"]["weight"] == pytest.approx(float(ready.x[7, 4]))
    again = ds.prepare(list(range(5)), state=state)
    assert torch.equal(again.x, ready.x)


def test_category_unseen_in_training_encodes_as_zeros(tmp_path):
    frame = animals()
    frame.loc[[5, 40], "color"] = "green"
    path = tmp_path / "green.csv"
    frame.to_csv(path, index=False)
    ds = create_dataset(f"csv:{path}", target="species")
    ready = ds.prepare([i for i in range(60) if i not in (5, 40)])
    assert "color=green" not in ready.feature_names
    colors = [i for i, n in enumerate(ready.feature_names) if n.startswith("color=")]
    assert ready.x[[5, 40]][:, colors].abs().sum() == 0
    assert ready.x[6, colors].sum() == 1


def test_parquet_reads_like_csv(tmp_path):
    frame = animals()
    frame["flag"] = frame["size"] > 2  # a bool column is a category too
    frame.to_parquet(tmp_path / "a.parquet")
    frame.to_csv(tmp_path / "a.csv", index=False)
    from_parquet = create_dataset(f"parquet:{tmp_path / 'a.parquet'}", target="species")
    from_csv = create_dataset(f"csv:{tmp_path / 'a.csv'}", target="species")
    a, b = from_parquet.prepare(range(40)), from_csv.prepare(range(40))
    assert a.feature_names == b.feature_names and "flag=True" in a.feature_names
    assert torch.allclose(a.x, b.x) and torch.equal(a.y, b.y) and a.class_names == b.class_names


def test_table_errors_name_the_column(tmp_path, csv_file):
    with pytest.raises(DataError) as info:
        create_dataset(f"csv:{csv_file}", impute="median")
    assert "set data.target" in one_line(info) and "'species'" in str(info.value)
    with pytest.raises(DataError, match="no column 'kind' for data.target"):
        create_dataset(f"csv:{csv_file}", target="kind")
    frame = animals()
    frame["species"] = "cat"
    frame.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DataError) as info:
        create_dataset(f"csv:{tmp_path / 'one.csv'}", target="species")
    assert "has one class ('cat')" in one_line(info)
    frame = animals()
    frame["id"] = [f"row{i}" for i in range(len(frame))]
    frame.to_csv(tmp_path / "ids.csv", index=False)
    with pytest.raises(DataError, match="column 'id' has 60 distinct values.*data.drop_columns"):
        create_dataset(f"csv:{tmp_path / 'ids.csv'}", target="species")
    ds = create_dataset(f"csv:{tmp_path / 'ids.csv'}", target="species", drop_columns=["id"])
    assert "id" not in " ".join(ds.prepare(range(40)).feature_names)
    with pytest.raises(DataError, match="data file not found"):
        create_dataset(f"csv:{tmp_path / 'none.csv'}", target="species")


def test_options_a_source_does_not_read_are_refused(csv_file, image_folder):
    with pytest.raises(ConfigError, match=r"data.image_size does not apply to csv: data"):
        create_dataset(f"csv:{csv_file}", target="species", image_size=(8, 8))
    with pytest.raises(ConfigError, match=r"data.target does not apply to imagefolder: data"):
        create_dataset(f"imagefolder:{image_folder}", target="label")
    with pytest.raises(ConfigError, match=r"data.impute does not apply to dataset 'wine'"):
        create_dataset("wine", impute="median")
    with pytest.raises(ConfigError, match="unknown data source 'cvs'; did you mean 'csv'"):
        create_dataset(f"cvs:{csv_file}")


def test_text_column_needs_an_hf_teacher(tmp_path):
    from kdlens.config import load_config
    from kdlens.pipeline import prepare

    frame = animals()
    frame["review"] = [
        f"a {s} of size {z:.1f}" for s, z in zip(frame.species, frame["size"], strict=True)
    ]
    frame.to_csv(tmp_path / "reviews.csv", index=False)
    name = f"csv:{tmp_path / 'reviews.csv'}"
    ds = create_dataset(name, target="species", text="review")
    assert ds.kind == "text" and ds.texts == frame["review"].tolist() and ds.x.shape == (60, 0)
    config = load_config(overrides=[f"data.name={name}", "data.target=species", "data.text=review"])
    with pytest.raises(ConfigError) as info:
        prepare(config, tmp_path / "run")
    assert one_line(info) == "data.text needs an hf: teacher (teacher.model: hf:PATH)"
    assert not (tmp_path / "run").exists()


# --- hf: ---------------------------------------------------------------------------------------


def test_hf_image_dataset_dict_gives_classes_and_split(tmp_path, digit_pixels):
    datasets = pytest.importorskip("datasets")
    from PIL import Image

    features = datasets.Features(
        {"img": datasets.Image(), "digit": datasets.ClassLabel(names=WORDS)}
    )

    def part(rows):
        images, labels = [], []
        for label, word in enumerate(WORDS):
            images += [Image.fromarray(a, mode="L") for a in digit_pixels[word][rows]]
            labels += [label] * len(digit_pixels[word][rows])
        return datasets.Dataset.from_dict({"img": images, "digit": labels}, features=features)

    saved = datasets.DatasetDict(train=part(slice(0, 20)), test=part(slice(20, None)))
    saved.save_to_disk(str(tmp_path / "hfimg"))
    ds = create_dataset(f"hf:{tmp_path / 'hfimg'}")
    assert ds.kind == "image" and ds.class_names == WORDS and ds.input_shape == (1, 8, 8)
    assert ds.fixed_split.tolist() == [TRAIN] * 60 + [TEST] * 12
    first = torch.as_tensor(digit_pixels["zero"][0] / 255.0, dtype=torch.float32)
    assert torch.allclose(ds.x[0, 0], first, atol=1e-6) and ds.y[0] == 0
    assert ds.y[60:].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    resized = create_dataset(f"hf:{tmp_path / 'hfimg'}", image_size=(4, 4), channels=3)
    assert resized.input_shape == (3, 4, 4)


def test_hf_text_dataset_and_bad_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    texts = ["good film", "bad film", "great plot", "dull plot"]
    labels = ["pos", "neg", "pos", "neg"]
    datasets.Dataset.from_dict({"text": texts, "sentiment": labels}).save_to_disk(
        str(tmp_path / "hftext")
    )
    ds = create_dataset(f"hf:{tmp_path / 'hftext'}", target="sentiment")
    assert ds.kind == "text" and ds.texts == texts and ds.class_names == ["neg", "pos"]
    assert ds.y.tolist() == [1, 0, 1, 0] and ds.fixed_split is None
    with pytest.raises(DataError) as info:
        create_dataset(f"hf:{tmp_path / 'hftext'}")
    assert "set data.target" in one_line(info)
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError) as info:
        create_dataset(f"hf:{tmp_path / 'plain'}")
    assert "is not a folder written by datasets' save_to_disk" in one_line(info)


# --- a whole run -------------------------------------------------------------------------------


def tiny_config(name: str, *extra: str):
    from kdlens.config import load_config
    from tests.conftest import SMOKE

    return load_config(
        SMOKE,
        [
            f"data.name={name}",
            "explain.enabled=false",
            "readable.students=[]",
            "readable.sweeps=[]",
            "deploy.quantize=false",
            *extra,
        ],
    )


@pytest.mark.usefixtures("single_thread")
def test_runs_on_a_csv_and_an_image_folder(tmp_path, csv_file, split_image_folder):
    from kdlens.explain.inputs import from_run_dir
    from kdlens.pipeline import run
    from kdlens.run import load_run

    config = tiny_config(
        f"csv:{csv_file}",
        "data.target=species",
        "data.impute=median",
        "teacher.model=mlp",
        "teacher.model_args={hidden: [16]}",
    )
    metrics = run(config, tmp_path / "table")
    assert metrics["dataset"]["class_names"] == ["cat", "dog", "emu"]
    saved = json.loads((tmp_path / "table" / "metrics.json").read_text())
    assert saved["dataset"]["class_names"] == ["cat", "dog", "emu"]
    assert set(saved["models"]) == {"teacher", "scratch", "kd"}
    assert all(0 <= m["accuracy"] <= 1 for m in saved["models"].values())
    record = json.loads((tmp_path / "table" / "dataset.json").read_text())
    assert record["prepared"]["categories"]["color"] == ["blue", "grey", "red"]
    assert "color=red" in record["feature_names"]
    # Reopening the run re-applies the saved encoder: same inputs, same names.
    reopened = load_run(tmp_path / "table")
    assert reopened.dataset.feature_names == record["feature_names"]
    assert from_run_dir(tmp_path / "table").feature_names == record["feature_names"]

    metrics = run(tiny_config(f"imagefolder:{split_image_folder}"), tmp_path / "images")
    assert metrics["dataset"]["class_names"] == ["one", "two", "zero"]
    assert metrics["dataset"]["n_test"] == 18  # the folder's test/ images
    assert (tmp_path / "images" / "metrics.json").is_file()


# --- around the sources ------------------------------------------------------------------------


def test_sixteen_bit_grey_png_keeps_its_range(tmp_path):
    from PIL import Image

    pixels = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    for c in ("a", "b"):
        (tmp_path / "deep" / c).mkdir(parents=True)
        Image.fromarray(pixels).save(tmp_path / "deep" / c / "x.png")
    ds = create_dataset(f"imagefolder:{tmp_path / 'deep'}")
    assert torch.allclose(ds.x[0, 0], torch.as_tensor(pixels / 65535, dtype=torch.float32))


def test_saved_encoding_is_reapplied_and_changed_labels_are_caught(tmp_path):
    from kdlens.data import restore_dataset, save_dataset_record
    from kdlens.errors import CheckpointError

    frame = animals()
    frame.to_csv(tmp_path / "a.csv", index=False)
    train = list(range(40))
    ready = create_dataset(f"csv:{tmp_path / 'a.csv'}", target="species").prepare(train)
    save_dataset_record(ready, tmp_path / "dataset.json")
    frame.loc[0, "color"] = "pink"  # a new category after the run: encoded as unseen
    frame.to_csv(tmp_path / "a.csv", index=False)
    again = restore_dataset(
        create_dataset(f"csv:{tmp_path / 'a.csv'}", target="species"),
        train,
        tmp_path / "dataset.json",
    )
    assert again.feature_names == ready.feature_names and again.x[0, 1:4].sum() == 0
    frame["species"] = frame["species"].replace("cat", "cow")
    frame.to_csv(tmp_path / "a.csv", index=False)
    with pytest.raises(CheckpointError, match="the data changed since the run"):
        restore_dataset(
            create_dataset(f"csv:{tmp_path / 'a.csv'}", target="species"),
            train,
            tmp_path / "dataset.json",
        )


def test_missing_optional_packages_give_the_extra_to_install(tmp_path, monkeypatch, csv_file):
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    monkeypatch.setitem(__import__("sys").modules, "datasets", None)
    with pytest.raises(DataError, match=r"pip install 'kdlens\[tables\]'"):
        create_dataset(f"csv:{csv_file}", target="species")
    (tmp_path / "hf").mkdir()
    with pytest.raises(DataError, match=r"pip install 'kdlens\[hf\]'"):
        create_dataset(f"hf:{tmp_path / 'hf'}")


def test_kdlens_list_shows_every_source(capsys):
    from kdlens.cli import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (
        "npz:<file>",
        "imagefolder:<folder>",
        "csv:<file>",
        "parquet:<file>",
        "hf:<folder>",
    ):
        assert name in out
