from pathlib import Path

import pytest
import torch
import yaml

from kdlens.config import RunConfig, load_config, save_config
from kdlens.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = sorted(ROOT.glob("**/*.yaml"))


def test_configs_are_shipped():
    names = {p.name for p in CONFIGS}
    assert {"default.yaml", "smoke.yaml"} <= names


def test_cifar100_recipes_cover_every_method():
    from kdlens.distill import list_distillers

    recipes = {load_config(p).distill.method for p in (ROOT / "cifar100").glob("*.yaml")}
    assert set(list_distillers()) <= recipes


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_config_loads_and_builds(path, single_thread):
    """Models, and the distiller with the config's options: a method's recipe needs it registered."""
    from kdlens.distill import build_distiller, list_distillers
    from kdlens.models import create_model

    config = load_config(path)
    shape = {
        "digits": (1, 8, 8),
        "mnist5k": (1, 28, 28),
        "wine": (13,),
        "breast_cancer": (30,),
    }.get(config.data.name, (3, 32, 32))
    classes = 100 if config.data.name == "cifar100" else 10
    models = []
    for spec in (config.teacher, config.student):
        model = create_model(spec.model, shape, classes, **spec.model_args).eval()
        assert model(torch.rand(2, *shape)).shape == (2, classes)
        models.append(model)
    if config.distill.method not in list_distillers():
        pytest.fail(f"{path.name}: method {config.distill.method!r} is not registered")
    build_distiller(config.distill, models[1], models[0], shape, num_examples=50_000)


def test_default_yaml_is_the_packaged_recipe_and_hintons_mnist_setup():
    from kdlens.config import default_config_path

    root = next(p for p in CONFIGS if p.name == "default.yaml")
    packaged = default_config_path()  # what `kdlens run` without --config reads, installed or not
    assert packaged.read_bytes() == root.read_bytes()
    c = load_config(packaged)
    assert c.data.name == "mnist5k"
    assert c.teacher.model == "cnn" and c.teacher.train.augment.shift == 2
    assert c.teacher.train.augment.mixup > 0
    assert c.student.model == "mlp" and c.student.train.augment.shift == 0
    assert c.distill.temperature >= 10 and c.distill.alpha <= 0.1


def test_default_student_compresses_its_teacher():
    """Issue 12: the default student has >= 4x fewer parameters and >= 10x fewer FLOPs."""
    import torch

    from kdlens.config import default_config_path
    from kdlens.evaluate.compression import flops_per_example
    from kdlens.models import count_parameters, create_model

    c = load_config(default_config_path())
    shape, example = (1, 28, 28), torch.zeros(1, 1, 28, 28)
    teacher = create_model(c.teacher.model, shape, 10, **c.teacher.model_args)
    student = create_model(c.student.model, shape, 10, **c.student.model_args)
    assert count_parameters(teacher) >= 4 * count_parameters(student)
    assert flops_per_example(teacher, example) >= 10 * flops_per_example(student, example)


def test_code_defaults_are_neutral():
    c = RunConfig()
    for train in (c.teacher.train, c.student.train, c.readable.soft_tree.train):
        assert train.augment == train.augment.__class__()  # no shift, no flip, no mixup
    assert c.teacher.preprocess.normalize == "fit" and c.teacher.preprocess.is_identity
    assert not c.teacher.accept_weak


def test_a_file_that_changes_only_the_data_carries_no_augmentation(tmp_path):
    path = tmp_path / "table.yaml"
    path.write_text("data: {name: 'csv:loans.csv', target: label}\n")
    c = load_config(path)
    assert c.teacher.train.augment.shift == 0 and c.teacher.train.augment.mixup == 0


def test_cli_without_config_runs_the_default_recipe(monkeypatch, tmp_path):
    from kdlens import cli

    seen = {}

    def fake_run(config, out, **kwargs):
        seen["config"] = config
        return {}

    monkeypatch.setattr("kdlens.pipeline.run", fake_run)
    assert cli.main(["run", "--out", str(tmp_path / "r"), "--set", "seed=3"]) == 0
    assert seen["config"].teacher.train.augment.shift == 2 and seen["config"].seed == 3


def test_overrides_keep_types_and_merge(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "distill: {temperature: 8}\nstudent: {model: mlp, model_args: {hidden: [16]}}\n"
    )
    c = load_config(
        path, ["distill.alpha=0.5", "student.train.epochs=3", "student.model_args.hidden=[4, 4]"]
    )
    assert c.distill.temperature == 8 and c.distill.alpha == 0.5
    assert c.student.train.epochs == 3 and c.student.model_args == {"hidden": [4, 4]}
    assert c.teacher == RunConfig().teacher  # untouched sections keep their defaults


def test_changing_model_drops_the_default_models_arguments():
    c = load_config(None, ["teacher.model=resnet"])
    assert c.teacher.model_args == {}


@pytest.mark.parametrize(
    "override, pattern",
    [
        ("teacher.preprocess.normalize=imagenett", r"teacher.preprocess.normalize"),
        ("teacher.preprocess.normalize={mean: [0.5], std: [0]}", r"normalize.*std.*greater than 0"),
        ("teacher.preprocess.normalize={mean: [0.5, 0.5], std: [1]}", r"2 means but 1 stds"),
        ("student.preprocess.resize=[0, 4]", r"student.preprocess.resize"),
        ("student.accept_weak=true", r"unknown field 'student.accept_weak'"),
    ],
)
def test_preprocess_fields_are_checked(override, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(None, [override])
    assert "\n" not in str(info.value)
    ok = load_config(None, ["teacher.preprocess.normalize={mean: [0.1], std: [0.3]}"])
    assert ok.teacher.preprocess.normalize.mean == [0.1]


def test_round_trip(tmp_path):
    c = load_config(None, ["seed=7", "distill.temperature=3.5"])
    save_config(c, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == c


@pytest.mark.parametrize(
    "overrides, pattern",
    [
        (
            ["distill.temprature=4"],
            r"unknown field 'distill.temprature'; did you mean 'distill.temperature'",
        ),
        (["distill.temperature=0"], r"distill.temperature: .*greater than 0"),
        (["distill.temperature=-1"], r"distill.temperature"),
        (["distill.alpha=1.5"], r"distill.alpha: .*less than or equal to 1"),
        (["distill.alpha=-0.1"], r"distill.alpha"),
        (["teacher.train.epochs=0"], r"teacher.train.epochs: .*greater than 0"),
        (["student.train.epochs=-3"], r"student.train.epochs"),
        (["student.train.optimizer=rmsprop"], r"student.train.optimizer"),
        (["seed=abc"], r"seed"),
        (["device=tpu"], r"device"),
        (["novalue"], r"expected key=value"),
    ],
)
def test_bad_values_name_the_field(overrides, pattern):
    with pytest.raises(ConfigError, match=pattern) as info:
        load_config(None, overrides)
    assert "\n" not in str(info.value)


def test_missing_and_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("distill: {temperature: 4\nseed: [\n")
    with pytest.raises(ConfigError, match="invalid YAML") as info:
        load_config(bad)
    assert "\n" not in str(info.value)
    listy = tmp_path / "list.yaml"
    listy.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listy)


def test_sgd_nesterov_follows_the_config():
    from kdlens.config import TrainConfig
    from kdlens.train import make_optimizer

    params = [torch.nn.Parameter(torch.zeros(1))]
    for nesterov in (True, False):
        cfg = TrainConfig(optimizer="sgd", nesterov=nesterov)
        assert make_optimizer(params, cfg).param_groups[0]["nesterov"] is nesterov
    plain = TrainConfig(optimizer="sgd", momentum=0.0)  # torch refuses Nesterov without momentum
    assert make_optimizer(params, plain).param_groups[0]["nesterov"] is False
