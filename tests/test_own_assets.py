"""A user's own assets through ``kdlens run``, end to end to report.html: an image folder of PNGs
with a timm teacher saved with its weights; a CSV (string labels, a category, a missing value)
with a saved scikit-learn gradient-boosting teacher; a Parquet file with a teacher known only by
its saved logits; a ``datasets`` folder of texts with a tiny transformers teacher (built from a
config, with its tokenizer) and a smaller transformers student. Every file is written here, nothing
is downloaded; each teacher is trained in a few seconds so it is worth distilling."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch

from kdlens.cli import main
from tests.conftest import SMOKE

SEED, VAL, TEST = 0, 0.1, 0.2  # the runs' split: fixtures fit their teachers on its train rows

# A quick report: few examples and steps; the readable tree without its sweep or figures.
QUICK = [
    "readable.figures=false",
    "explain.n_examples=16",
    "explain.n_show=2",
    "explain.ig_steps=4",
    "explain.deletion_steps=4",
    "explain.infidelity_samples=2",
    "explain.max_disagreements=2",
    "readable.students=[tree]",
    "readable.sweeps=[]",
    "deploy.timing_seconds=0.01",
    "deploy.timing_warmup=0",
]


def cli_run(tmp_path, name: str, *overrides: str) -> dict:
    out = tmp_path / name
    args = ["run", "--config", str(SMOKE), "--out", str(out), "--quiet"]
    for o in [*QUICK, *overrides]:
        args += ["--set", o]
    assert main(args) == 0
    assert (out / "report.html").is_file()
    return json.loads((out / "metrics.json").read_text())


@contextlib.contextmanager
def one_thread():
    """Module fixtures train teachers: one thread is fastest on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_split(dataset):
    from kdlens.data import make_split

    return make_split(dataset, VAL, TEST, SEED)


# -- an image folder and a timm teacher ------------------------------------------------------


@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory):
    """PNGs of scikit-learn's 8x8 digits, one folder per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = tmp_path_factory.mktemp("assets") / "digits"
    d = load_digits()
    for i, (img, label) in enumerate(zip(d.images[:400], d.target[:400], strict=True)):
        folder = root / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((img * 255 / 16).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return root


def fit_torch(model, x, y, epochs: int, lr: float = 3e-3, batch: int = 32):
    """A few epochs of Adam on raw inputs: a teacher made outside kdlens."""
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g)
        for b in range(0, len(y), batch):
            i = order[b : b + batch]
            loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def timm_teacher(digits_folder):
    """timm's test_resnet trained on the folder's raw [0, 1] pixels, saved with its weights."""
    pytest.importorskip("timm")
    from kdlens.data import create_dataset
    from kdlens.models import create_model
    from kdlens.weights import save_weights

    torch.manual_seed(0)
    ds = create_dataset(f"imagefolder:{digits_folder}")
    train = torch.as_tensor(train_split(ds).train)
    model = create_model("timm:test_resnet", ds.input_shape, ds.num_classes)
    with one_thread():
        fit_torch(model, ds.x[train], ds.y[train], epochs=6)
    path = digits_folder.parent / "test_resnet_digits.safetensors"
    save_weights(model, path)
    return path


@pytest.mark.usefixtures("single_thread")
def test_image_folder_with_a_timm_teacher_saved_with_its_weights(
    tmp_path, digits_folder, timm_teacher
):
    m = cli_run(
        tmp_path,
        "timm",
        f"data.name=imagefolder:{digits_folder}",
        "teacher.model=timm:test_resnet",
        f"teacher.checkpoint={timm_teacher}",
        "teacher.preprocess.normalize=none",  # it learned on raw pixels
    )
    teacher = m["models"]["teacher"]
    assert teacher["family"] == "timm" and teacher["preprocess"]["normalize"] == "none"
    assert teacher["loaded_val_accuracy"] > 0.5 and teacher["accuracy"] > 0.5
    assert m["dataset"]["class_names"] == [f"digit{i}" for i in range(10)]
    assert "tree_kd" in m["models"] and "kd_int8" in m["models"]


# -- a CSV and a scikit-learn gradient-boosting teacher -------------------------------------


def animals(n: int = 150, seed: int = 0):
    """Species from size and colour, with string labels and a categorical column."""
    import pandas as pd

    g = np.random.default_rng(seed)
    species = np.array(["cat", "dog", "emu"])[np.arange(n) % 3]
    color = np.where(species == "emu", "grey", np.where(g.random(n) < 0.8, "red", "blue"))
    size = np.where(species == "dog", 3.0, 1.0) + g.normal(0, 0.3, n)
    weight = size * 2 + np.where(species == "emu", 1.0, 0.0) + g.normal(0, 0.2, n)
    return pd.DataFrame({"size": size, "color": color, "weight": weight, "species": species})


# About 100 training rows: smoke's 4 batches would leave the student at chance.
TABLE_STUDENT = [
    "student.model_args={hidden: [16]}",
    "student.train.epochs=40",
    "student.train.lr=0.01",
]


@pytest.fixture(scope="module")
def animals_csv(tmp_path_factory):
    frame = animals()
    frame.loc[7, "weight"] = np.nan
    path = tmp_path_factory.mktemp("assets") / "animals.csv"
    frame.to_csv(path, index=False)
    return path


def encoded_training_rows(name: str, **options):
    """What kdlens feeds a teacher: the run's split, the table encoded on its training rows."""
    from kdlens.data import create_dataset

    ds = create_dataset(name, **options)
    split = train_split(ds)
    ds = ds.prepare(split.train)
    return ds, split


@pytest.fixture(scope="module")
def gb_teacher(animals_csv):
    sio = pytest.importorskip("skops.io")
    from sklearn.ensemble import GradientBoostingClassifier

    ds, split = encoded_training_rows(f"csv:{animals_csv}", target="species", impute="median")
    train = split.train
    names = np.array(ds.class_names)[ds.y[train].numpy()]  # fitted on the label strings
    model = GradientBoostingClassifier(n_estimators=30, random_state=0)
    model.fit(ds.x[train].numpy(), names)
    path = animals_csv.parent / "gb.skops"
    sio.dump(model, path)
    return path


@pytest.mark.usefixtures("single_thread")
def test_csv_with_a_saved_gradient_boosting_teacher(tmp_path, animals_csv, gb_teacher):
    m = cli_run(
        tmp_path,
        "gb",
        f"data.name=csv:{animals_csv}",
        "data.target=species",
        "data.impute=median",
        f"teacher.model=sklearn:{gb_teacher}",
        *TABLE_STUDENT,
    )
    teacher = m["models"]["teacher"]
    assert teacher["family"] == "sklearn" and teacher["loaded_val_accuracy"] > 0.8
    assert m["dataset"]["class_names"] == ["cat", "dog", "emu"]
    assert any("teacher.train.augment" in n for n in m["notes"])  # smoke's shift: images only
    explain = json.loads((tmp_path / "gb" / "explain.json").read_text())
    assert "no gradients" in explain["attributions"]["skipped"]["teacher"]
    assert "kd" in explain["attributions"]["maps"]  # the students are still explained
    html = (tmp_path / "gb" / "report.html").read_text()
    assert "The teacher was loaded, not trained" in html and "no gradients" in html


# -- a Parquet file and a teacher known only by its saved logits ----------------------------


@pytest.fixture(scope="module")
def parquet_and_logits(tmp_path_factory):
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("assets")
    frame = animals(seed=1)
    frame.to_parquet(folder / "animals.parquet")
    ds, split = encoded_training_rows(f"parquet:{folder / 'animals.parquet'}", target="species")
    model = LogisticRegression(max_iter=500).fit(ds.x[split.train], ds.y[split.train])
    logits = model.decision_function(ds.x.numpy())  # one row per example, in the data's order
    np.save(folder / "api_logits.npy", logits.astype(np.float32))
    return folder / "animals.parquet", folder / "api_logits.npy"


@pytest.mark.usefixtures("single_thread")
def test_parquet_with_a_teacher_known_only_by_its_logits(tmp_path, parquet_and_logits):
    parquet, logits = parquet_and_logits
    m = cli_run(
        tmp_path,
        "logits",
        f"data.name=parquet:{parquet}",
        "data.target=species",
        f"teacher.model=logits:{logits}",
        *TABLE_STUDENT,
        "readable.students=[soft_tree, tree]",
    )
    teacher = m["models"]["teacher"]
    assert teacher["family"] == "logits" and teacher["preprocess"] is None
    assert teacher["loaded_val_accuracy"] > 0.8
    assert m["models"]["kd"]["fidelity"] > 0.5 and "soft_tree_kd" in m["models"]
    records = json.loads((tmp_path / "logits" / "models.json").read_text())
    assert records["teacher"]["weights"] is None and records["teacher"]["source"] == "loaded"
    explain = json.loads((tmp_path / "logits" / "explain.json").read_text())
    assert "saved outputs" in explain["attributions"]["skipped"]["teacher"]
    assert "size_bytes" not in m["models"]["teacher"]  # nothing to time or weigh
    # The report can be redone from the folder: the teacher's test logits were saved.
    assert main(["report", str(tmp_path / "logits")]) == 0


# -- a datasets folder of texts and transformers models -------------------------------------

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *"the a this movie film plot was is very really good great fine bad awful dull".split(),
]


def reviews(n: int = 160):
    g = np.random.default_rng(0)
    good, bad = ["good", "great", "fine"], ["bad", "awful", "dull"]
    texts, labels = [], []
    for i in range(n):
        positive = i % 2 == 0
        word = g.choice(good if positive else bad)
        subject = g.choice(["the movie", "this film", "the plot"])
        texts.append(
            f"{subject} {g.choice(['was', 'is'])} {g.choice(['very ', 'really ', ''])}{word}"
        )
        labels.append("pos" if positive else "neg")
    return texts, labels


@pytest.fixture(scope="module")
def text_assets(tmp_path_factory):
    """A save_to_disk folder of reviews, a tiny BERT teacher fine-tuned on them with its
    tokenizer, and a smaller BERT config as the student's architecture."""
    datasets = pytest.importorskip("datasets")
    transformers = pytest.importorskip("transformers")
    from kdlens.models import create_model
    from kdlens.models.hf_models import tokenize

    root = tmp_path_factory.mktemp("text")
    texts, labels = reviews()
    datasets.Dataset.from_dict({"text": texts, "sentiment": labels}).save_to_disk(
        str(root / "reviews")
    )
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = transformers.BertTokenizer(str(root / "vocab.txt"))
    torch.manual_seed(0)
    config = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=32,
        num_labels=2,
    )
    bert = transformers.BertForSequenceClassification(config)
    bert.save_pretrained(root / "teacher")
    tokenizer.save_pretrained(root / "teacher")
    # Fine-tune it on the reviews (labels in the data's class order: neg, pos).
    teacher = create_model(f"hf:{root / 'teacher'}", (8,), 2)
    ids = tokenize(root / "teacher", texts).float()
    y = torch.tensor([["neg", "pos"].index(s) for s in labels])
    with one_thread():
        fit_torch(teacher, ids, y, epochs=8)
    teacher.model.save_pretrained(root / "teacher")
    small = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=32,
        num_labels=2,
    )
    small.architectures = ["BertForSequenceClassification"]
    small.save_pretrained(root / "student")
    return root


@pytest.mark.usefixtures("single_thread")
def test_text_datasets_folder_with_a_transformers_teacher(tmp_path, text_assets):
    m = cli_run(
        tmp_path,
        "text",
        f"data.name=hf:{text_assets / 'reviews'}",
        "data.target=sentiment",
        f"teacher.model=hf:{text_assets / 'teacher'}",
        f"student.model=hf:{text_assets / 'student'}",
        "student.model_args={pretrained: false}",
        "student.train.lr=0.003",
    )
    teacher = m["models"]["teacher"]
    assert teacher["family"] == "hf" and teacher["loaded_val_accuracy"] > 0.8
    assert m["dataset"]["class_names"] == ["neg", "pos"]
    assert "kd" in m["models"] and not any(n.startswith("tree") for n in m["models"])
    assert any("readable" in n for n in m["notes"])
    explain = json.loads((tmp_path / "text" / "explain.json").read_text())
    assert "token ids" in explain["attributions"]["skipped"]["kd"]
    assert isinstance(explain["dark_knowledge"]["examples"][0]["input"], str)  # the text itself
    normalization = json.loads((tmp_path / "text" / "normalization.json").read_text())
    assert set(normalization["mean"]) == {0.0} and set(normalization["std"]) == {1.0}
    # Reopened, the texts are tokenized again by the teacher's tokenizer and the models rebuilt.
    assert main(["report", str(tmp_path / "text")]) == 0
    again = json.loads((tmp_path / "text" / "explain.json").read_text())
    assert again["dark_knowledge"]["matrices"] == explain["dark_knowledge"]["matrices"]
