"""Teachers and students from the ecosystem: timm, torchvision weights, transformers folders,
saved scikit-learn estimators, saved logits and users' factories. Real files, no network."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest
import torch
from torch import nn

from kdlens.errors import CheckpointError, ConfigError, KdlensError
from kdlens.models import PREFIXES, create_model
from kdlens.models.registry import SOURCES
from kdlens.weights import load_weights, save_weights


def test_every_source_is_listed_with_its_prefix():
    assert set(SOURCES) == {"torchvision", "timm", "hf", "sklearn", "logits", "import"}
    for prefix, source in SOURCES.items():
        assert source.usage.startswith(prefix + ":") and PREFIXES[source.usage] == source.help
        assert callable(source.factory())
    with pytest.raises(ConfigError, match="unknown source 'keras:'"):
        create_model("keras:foo", (3, 8, 8), 2)


# -- timm -------------------------------------------------------------------------------------


def test_timm_model_saved_and_loaded_as_a_checkpoint(tmp_path):
    pytest.importorskip("timm")
    model = create_model("timm:test_resnet", (1, 16, 16), 3).eval()
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    save_weights(model, tmp_path / "teacher.safetensors")
    again = load_weights(
        create_model("timm:test_resnet", (1, 16, 16), 3), tmp_path / "teacher.safetensors", 3
    )
    x = torch.rand(4, 1, 16, 16)
    torch.testing.assert_close(again.eval()(x), model(x))


def test_timm_pretrained_offline_names_the_cache_folder(tmp_path, monkeypatch):
    pytest.importorskip("timm")
    import huggingface_hub

    empty = tmp_path / "hub"
    empty.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(empty))
    with pytest.raises(CheckpointError) as e:
        create_model("timm:test_resnet", (3, 16, 16), 3, pretrained=True)
    message = str(e.value)
    assert "\n" not in message and str(empty) in message and "timm/test_resnet.r160_in1k" in message
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "elsewhere"))):
        create_model(
            "timm:test_resnet",
            (3, 16, 16),
            3,
            pretrained=True,
            cache_dir=str(tmp_path / "elsewhere"),
        )


def test_timm_pretrained_reads_the_local_hub_cache(tmp_path):
    """Weights laid out as huggingface_hub caches them are found and adapted (classes, channels)."""
    timm = pytest.importorskip("timm")

    source = timm.create_model("test_resnet", num_classes=1000)
    snapshot = tmp_path / "models--timm--test_resnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("abc123")
    save_weights(source, snapshot / "model.safetensors")
    model = create_model(
        "timm:test_resnet", (1, 16, 16), 3, pretrained=True, cache_dir=str(tmp_path)
    )
    assert model(torch.rand(2, 1, 16, 16)).shape == (2, 3)
    theirs, ours = source.state_dict(), model.state_dict()
    deep = [k for k in ours if k.startswith("layer") and k.endswith("conv1.weight")]
    assert deep and all(torch.equal(ours[k], theirs[k]) for k in deep)
    # One input channel: timm sums the pretrained stem over the RGB channels.
    stem = timm.models.get_pretrained_cfg("test_resnet").first_conv + ".weight"
    torch.testing.assert_close(ours[stem], theirs[stem].sum(1, keepdim=True))


def test_timm_unknown_name_and_argument():
    pytest.importorskip("timm")
    with pytest.raises(ConfigError, match="did you mean 'test_resnet'"):
        create_model("timm:test_resnnet", (3, 16, 16), 3)
    with pytest.raises(ConfigError, match="timm:test_resnet"):
        create_model("timm:test_resnet", (3, 16, 16), 3, no_such_argument=1)
    with pytest.raises(ConfigError, match="pretrained: test_resnet.r160_in1k"):
        create_model("timm:test_resnet.nope", (3, 16, 16), 3, pretrained=True)


# -- torchvision weights ----------------------------------------------------------------------


def test_torchvision_weights_from_a_local_file_keep_features_and_resize_the_head(tmp_path):
    import torchvision

    imagenet = torchvision.models.get_model("shufflenet_v2_x0_5", num_classes=1000)
    save_weights(imagenet, tmp_path / "shufflenet.safetensors")
    model = create_model(
        "torchvision:shufflenet_v2_x0_5",
        (3, 32, 32),
        4,
        weights=str(tmp_path / "shufflenet.safetensors"),
    )
    assert model.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    ours, theirs = model.state_dict(), imagenet.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs if not k.startswith("fc."))
    with pytest.raises(CheckpointError, match="not found"):
        create_model(
            "torchvision:shufflenet_v2_x0_5", (3, 32, 32), 4, weights=str(tmp_path / "none.pt")
        )


def test_torchvision_weights_enum_offline_names_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(CheckpointError) as e:
        create_model("torchvision:shufflenet_v2_x0_5", (3, 32, 32), 4, weights="DEFAULT")
    assert "\n" not in str(e.value) and str(tmp_path / "hub" / "checkpoints") in str(e.value)
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        create_model("torchvision:shufflenet_v2_x0_5", (3, 32, 32), 4, weights="IMAGENET9K")


# -- transformers -----------------------------------------------------------------------------

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    *"the a good bad movie film great awful is was not very".split(),
]


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """A tiny ViT image classifier and a tiny BERT text classifier with its own tokenizer."""
    transformers = pytest.importorskip("transformers")
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    vit = transformers.ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=3,
    )
    transformers.ViTForImageClassification(vit).save_pretrained(root / "vit")
    (root / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    tokenizer = transformers.BertTokenizer(str(root / "vocab.txt"))  # positional: v4 and v5
    bert = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=37,
        max_position_embeddings=64,
        num_labels=2,
    )
    transformers.BertForSequenceClassification(bert).save_pretrained(root / "bert")
    tokenizer.save_pretrained(root / "bert")
    small = transformers.BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=16,
        max_position_embeddings=64,
        num_labels=2,
    )
    small.architectures = ["BertForSequenceClassification"]
    small.save_pretrained(root / "student")  # a config alone: an architecture to train
    return root


def test_hf_image_classifier_gives_its_logits(hf_folders):
    from transformers import AutoModelForImageClassification

    model = create_model(f"hf:{hf_folders / 'vit'}", (3, 8, 8), 3).eval()
    direct = AutoModelForImageClassification.from_pretrained(hf_folders / "vit").eval()
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(model(x), direct(pixel_values=x).logits)
    grey = create_model(f"hf:{hf_folders / 'vit'}", (1, 8, 8), 3).eval()
    torch.testing.assert_close(
        grey(x[:, :1]), direct(pixel_values=x[:, :1].repeat(1, 3, 1, 1)).logits
    )
    with pytest.raises(CheckpointError, match="predicts 3 classes but the data has 5.*reset_head"):
        create_model(f"hf:{hf_folders / 'vit'}", (3, 8, 8), 5)
    assert create_model(f"hf:{hf_folders / 'vit'}", (3, 8, 8), 5, reset_head=True)(x).shape == (
        2,
        5,
    )


def test_hf_text_teacher_tokenizes_and_masks_padding(hf_folders):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdlens.models.hf_models import tokenize

    texts = ["the movie was good", "bad", "a very very great film"]
    ids = tokenize(hf_folders / "bert", texts)  # (N, L), once per dataset
    assert ids.dtype == torch.long and ids.shape == (3, 7)
    teacher = create_model(f"hf:{hf_folders / 'bert'}", (ids.shape[1],), 2).eval()
    assert teacher.pad_token_id == 0
    tokenizer = AutoTokenizer.from_pretrained(hf_folders / "bert")
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    direct = AutoModelForSequenceClassification.from_pretrained(hf_folders / "bert").eval()
    expected = direct(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    torch.testing.assert_close(teacher(ids.float()), expected)  # ids ride float32 tensors exactly
    # Students on the same ids: a smaller hf: model from its config, and a user's factory.
    student = create_model(f"hf:{hf_folders / 'student'}", (ids.shape[1],), 2, pretrained=False)
    assert student(ids.float()).shape == (3, 2) and student.pad_token_id == 0
    with pytest.raises(KdlensError, match="outside its vocabulary"):
        teacher(torch.full((1, 4), len(VOCAB) + 3))
    with pytest.raises(ConfigError, match="text classifier and needs token ids"):
        create_model(f"hf:{hf_folders / 'bert'}", (3, 8, 8), 2)


def test_hf_folder_without_config_is_one_line(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(CheckpointError, match="has no config.json") as e:
        create_model(f"hf:{tmp_path}", (3, 8, 8), 2)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        create_model(f"hf:{tmp_path / 'missing'}", (3, 8, 8), 2)


def test_import_student_takes_token_ids(tmp_path, monkeypatch, hf_folders):
    from kdlens.models.hf_models import tokenize

    (tmp_path / "text_students_kd.py").write_text(
        "import torch.nn as nn\n"
        "class Bag(nn.Module):\n"
        "    def __init__(self, vocab, k):\n"
        "        super().__init__()\n"
        "        self.bag = nn.EmbeddingBag(vocab, 8, padding_idx=0)\n"
        "        self.out = nn.Linear(8, k)\n"
        "    def forward(self, ids):\n"
        "        return self.out(self.bag(ids.long()))\n"
        "def bag(input_shape, num_classes, vocab=100):\n"
        "    return Bag(vocab, num_classes)\n"
    )
    _cwd_only(tmp_path, monkeypatch)
    ids = tokenize(hf_folders / "bert", ["good film", "awful"])
    assert create_model("import:text_students_kd:bag", (ids.shape[1],), 2)(ids.float()).shape == (
        2,
        2,
    )


# -- scikit-learn -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import GradientBoostingClassifier

    x, y = load_breast_cancer(return_X_y=True)
    model = GradientBoostingClassifier(n_estimators=20, random_state=0).fit(x, y)
    return x, y, model


def test_sklearn_teacher_from_skops_gives_log_proba_of_raw_features(tmp_path, cancer):
    sio = pytest.importorskip("skops.io")
    from kdlens.data import Normalizer
    from kdlens.readable import SklearnTeacher  # readable students' teachers re-export it

    x, _, model = cancer
    sio.dump(model, tmp_path / "gb.skops")
    teacher = create_model(f"sklearn:{tmp_path / 'gb.skops'}", (30,), 2)
    assert isinstance(teacher, SklearnTeacher) and not list(teacher.parameters())
    expected = torch.as_tensor(np.log(model.predict_proba(x[:5])), dtype=torch.float32)
    torch.testing.assert_close(
        teacher(torch.as_tensor(x[:5], dtype=torch.float32)), expected, atol=1e-4, rtol=1e-4
    )
    normalizer = Normalizer.fit(torch.as_tensor(x, dtype=torch.float32))
    fed = create_model(f"sklearn:{tmp_path / 'gb.skops'}", (30,), 2, normalizer=normalizer)
    standardised = normalizer(torch.as_tensor(x[:5], dtype=torch.float32))
    torch.testing.assert_close(fed(standardised), expected, atol=1e-3, rtol=1e-3)
    with pytest.raises(CheckpointError, match="fitted on 30 features, the data has 4"):
        create_model(f"sklearn:{tmp_path / 'gb.skops'}", (4,), 2)
    with pytest.raises(CheckpointError, match="predicts 2 classes but the data has 3"):
        create_model(f"sklearn:{tmp_path / 'gb.skops'}", (30,), 3)


def test_sklearn_pickle_needs_trust(tmp_path, cancer):
    import joblib

    x, _, model = cancer
    joblib.dump(model, tmp_path / "gb.joblib")
    with pytest.raises(CheckpointError, match="--trust-pickle") as e:
        create_model(f"sklearn:{tmp_path / 'gb.joblib'}", (30,), 2)
    assert "\n" not in str(e.value)
    teacher = create_model(f"sklearn:{tmp_path / 'gb.joblib'}", (30,), 2, trust_pickle=True)
    assert teacher(torch.as_tensor(x[:3], dtype=torch.float32)).shape == (3, 2)


def test_sklearn_refuses_what_is_not_a_fitted_estimator(tmp_path, cancer):
    import operator

    import joblib

    sio = pytest.importorskip("skops.io")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.tree import DecisionTreeClassifier

    x, y, _ = cancer
    sio.dump({"weights": [1, 2]}, tmp_path / "dict.skops")
    with pytest.raises(CheckpointError, match="does not hold a scikit-learn classifier.*dict"):
        create_model(f"sklearn:{tmp_path / 'dict.skops'}", (30,), 2)
    sio.dump(DecisionTreeClassifier(), tmp_path / "unfitted.skops")
    with pytest.raises(CheckpointError, match="never fitted"):
        create_model(f"sklearn:{tmp_path / 'unfitted.skops'}", (30,), 2)
    joblib.dump(np.zeros(3), tmp_path / "array.joblib")
    with pytest.raises(CheckpointError, match="ndarray"):
        create_model(f"sklearn:{tmp_path / 'array.joblib'}", (30,), 2, trust_pickle=True)
    (tmp_path / "junk.skops").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="not a readable skops file"):
        create_model(f"sklearn:{tmp_path / 'junk.skops'}", (30,), 2)
    # A type outside scikit-learn is refused unless the user trusts it by name.
    neg = make_pipeline(FunctionTransformer(operator.neg), DecisionTreeClassifier(max_depth=2)).fit(
        x, y
    )
    sio.dump(neg, tmp_path / "neg.skops")
    with pytest.raises(CheckpointError, match="outside scikit-learn.*_operator.neg"):
        create_model(f"sklearn:{tmp_path / 'neg.skops'}", (30,), 2)
    trusted = create_model(f"sklearn:{tmp_path / 'neg.skops'}", (30,), 2, trusted=["_operator.neg"])
    assert trusted(torch.as_tensor(x[:2], dtype=torch.float32)).shape == (2, 2)


def test_sklearn_teacher_orders_string_classes_as_the_data(tmp_path):
    sio = pytest.importorskip("skops.io")
    from sklearn.linear_model import LogisticRegression

    x = np.array([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0]])
    y = np.array(["low", "low", "mid", "mid", "high", "high"])  # classes_: high, low, mid
    sio.dump(LogisticRegression().fit(x, y), tmp_path / "lr.skops")
    name = f"sklearn:{tmp_path / 'lr.skops'}"
    plain = create_model(name, (1,), 3)(torch.tensor([[0.0]]))
    named = create_model(name, (1,), 3, class_names=["low", "mid", "high"])(torch.tensor([[0.0]]))
    torch.testing.assert_close(named, plain[:, [1, 2, 0]])
    with pytest.raises(KdlensError, match="are not the data's"):
        create_model(name, (1,), 3, class_names=["a", "b", "c"])


# -- saved logits -----------------------------------------------------------------------------


def test_logits_teacher_from_probabilities_and_from_logits(tmp_path):
    from safetensors.numpy import save_file

    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.save(tmp_path / "probs.npy", probs)
    np.save(tmp_path / "logits.npy", logits)
    save_file({"logits": logits, "ids": np.arange(6)}, str(tmp_path / "out.safetensors"))
    from_probs = create_model(f"logits:{tmp_path / 'probs.npy'}", (4,), 3, num_examples=6)
    from_logits = create_model(f"logits:{tmp_path / 'logits.npy'}", (4,), 3, num_examples=6)
    from_file = create_model(f"logits:{tmp_path / 'out.safetensors'}", (4,), 3)
    assert from_probs.from_probabilities and not from_logits.from_probabilities
    index = torch.tensor([4, 0, 2])
    # log p differs from the logits by a per-row constant: the same softmax.
    torch.testing.assert_close(
        torch.softmax(from_probs.rows(index), 1), torch.as_tensor(probs[[4, 0, 2]])
    )
    torch.testing.assert_close(from_logits.rows(index), torch.as_tensor(logits[[4, 0, 2]]))
    torch.testing.assert_close(from_file.rows(index), from_logits.rows(index))
    with pytest.raises(KdlensError, match="cannot be run on inputs"):
        from_logits(torch.zeros(2, 4))


def test_logits_teacher_refuses_mismatched_rows_and_classes(tmp_path):
    np.save(tmp_path / "t.npy", np.zeros((6, 3), dtype=np.float32))
    with pytest.raises(CheckpointError, match=r"t\.npy has 6 rows but the dataset has 7 examples"):
        create_model(f"logits:{tmp_path / 't.npy'}", (4,), 3, num_examples=7)
    with pytest.raises(
        CheckpointError, match=r"t\.npy has 3 columns \(classes\) but the data has 2"
    ):
        create_model(f"logits:{tmp_path / 't.npy'}", (4,), 2)
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 0.0]]))
    with pytest.raises(CheckpointError, match="NaN or infinite value \\(row 1\\)"):
        create_model(f"logits:{tmp_path / 'nan.npy'}", (4,), 2)
    np.save(tmp_path / "flat.npy", np.zeros(6))
    with pytest.raises(CheckpointError, match="shape \\(examples, classes\\)"):
        create_model(f"logits:{tmp_path / 'flat.npy'}", (4,), 2)


# -- import: factories ------------------------------------------------------------------------


def _cwd_only(folder, monkeypatch):
    """Run from ``folder`` with nothing else pointing there: as a user typing `kdlens run`."""
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])


def test_import_finds_factories_in_the_current_folder_and_reports_their_failures(
    tmp_path, monkeypatch
):
    (tmp_path / "my_models_kd.py").write_text(
        "import torch.nn as nn\n"
        "def tiny(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], num_classes))\n"
        "def broken(input_shape, num_classes):\n"
        "    raise RuntimeError('out of widgets\\nsecond line')\n"
        "def listed(input_shape, num_classes):\n"
        "    return [nn.Linear(2, 2)]\n"
    )
    _cwd_only(tmp_path, monkeypatch)
    monkeypatch.delitem(sys.modules, "my_models_kd", raising=False)
    assert create_model("import:my_models_kd:tiny", (5,), 3)(torch.rand(2, 5)).shape == (2, 3)
    with pytest.raises(ConfigError) as e:
        create_model("import:my_models_kd:broken", (5,), 3)
    assert str(e.value) == (
        "model 'import:my_models_kd:broken': the factory my_models_kd.broken raised "
        "RuntimeError: out of widgets"
    )
    with pytest.raises(
        ConfigError, match="my_models_kd.listed returned a list, not a torch.nn.Module"
    ):
        create_model("import:my_models_kd:listed", (5,), 3)
    sys.modules.pop("my_models_kd", None)


def test_import_of_a_module_that_fails_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "bad_module_kd.py").write_text("x = 1 / 0\n")
    _cwd_only(tmp_path, monkeypatch)
    with pytest.raises(ConfigError, match="importing 'bad_module_kd' raised ZeroDivisionError"):
        create_model("import:bad_module_kd:f", (5,), 3)


# -- every factory returns (B, K) logits ------------------------------------------------------


def test_every_source_returns_a_module_with_logits(tmp_path, monkeypatch, cancer, hf_folders):
    sio = pytest.importorskip("skops.io")
    x, _, model = cancer
    sio.dump(model, tmp_path / "gb.skops")
    (tmp_path / "one_factory_kd.py").write_text(
        "import torch.nn as nn\n"
        "def f(input_shape, num_classes):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    _cwd_only(tmp_path, monkeypatch)
    image = torch.rand(2, 3, 8, 8)
    for name, shape, batch in [
        ("torchvision:shufflenet_v2_x0_5", (3, 8, 8), image),
        ("timm:test_efficientnet", (3, 8, 8), image),
        (f"hf:{hf_folders / 'vit'}", (3, 8, 8), image),
        (f"sklearn:{tmp_path / 'gb.skops'}", (30,), torch.as_tensor(x[:2], dtype=torch.float32)),
        ("import:one_factory_kd:f", (3, 8, 8), image),
    ]:
        built = create_model(name, shape, 3 if "gb.skops" not in name else 2)
        assert isinstance(built, nn.Module)
        out = built.eval()(batch)
        assert out.shape == (2, 3 if "gb.skops" not in name else 2), name
