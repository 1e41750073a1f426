"""Every distillation method on the smoke config: builds, trains a step, touches only what trains."""

import pytest
import torch

from kdlens.config import load_config
from kdlens.data import Batch
from kdlens.distill import Distiller, build_distiller, list_distillers
from kdlens.distill.hooks import capture, check_module_names
from kdlens.errors import ConfigError
from kdlens.train import fit, make_optimizer
from tests.conftest import SMOKE

# The smoke config with a small conv student, so every method (AT needs conv maps) applies.
CONV_STUDENT = [
    "student.model=cnn",
    "student.model_args={channels: [4, 8], hidden: 16}",
    "distill.options={fitnets: {teacher_layer: features.6, student_layer: features.2}, "
    "at: {teacher_layers: [features.2, features.6], student_layers: [features.2, features.6]}, "
    "dkd: {warmup: 2}}",
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from kdlens.pipeline import prepare

    return prepare(load_config(SMOKE, CONV_STUDENT), tmp_path_factory.mktemp("m") / "run")


def _distiller(ctx, method, **changes):
    config = ctx.config.distill.model_copy(update={"method": method, **changes})
    teacher, student = ctx.build(ctx.config.teacher), ctx.build(ctx.config.student)
    n = len(ctx.tensors("train")[1])
    return build_distiller(config, student, teacher, ctx.dataset.input_shape, num_examples=n)


def test_all_methods_are_registered():
    logit = {"dist", "ctkd", "pkt", "sp", "cc"}
    assert {"kd", "fitnets", "at", "dkd", "rkd"} | logit <= set(list_distillers())


def _one_line_naming(err: ConfigError, method: str) -> None:
    msg = str(err)
    assert "\n" not in msg and (repr(method) in msg or f"options.{method}" in msg), msg


@pytest.mark.parametrize("method", list_distillers())
def test_logit_standardization_changes_the_loss_or_is_refused_in_one_line(
    ctx, method, single_thread
):
    options = {**ctx.config.distill.options, "logit_standardization": True}
    try:
        d = _distiller(ctx, method, options=options)
    except ConfigError as e:
        _one_line_naming(e, method)
        assert "soft term" in str(e)
        return
    assert d.logit_standardization
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    on = d(batch)["loss"].detach()
    d.logit_standardization = False
    off = d(batch)["loss"].detach()
    assert torch.isfinite(on) and float(on) != pytest.approx(float(off), rel=1e-4), method


def test_logit_standardization_refusals(ctx):
    from kdlens.config import ModelSpec

    options = {"logit_standardization": True}
    with pytest.raises(ConfigError, match="no soft term on logits when distill.alpha is 1"):
        _distiller(ctx, "kd", alpha=1.0, options=options)
    config = ctx.config.distill.model_copy(update={"method": "kd", "options": options})
    tree = ctx.build(ModelSpec(model="soft_tree", model_args={"depth": 2}))
    with pytest.raises(ConfigError, match="cannot standardise the logits of SoftDecisionTree"):
        build_distiller(config, tree, ctx.build(ctx.config.teacher), ctx.dataset.input_shape)
    with pytest.raises(ConfigError, match="applies to every method; set distill.options.logit"):
        _distiller(ctx, "kd", options={"kd": {"logit_standardization": True}})


STUDENTS = {
    "mlp": {"model": "mlp", "model_args": {"hidden": [16]}},
    "cnn": {"model": "cnn", "model_args": {"channels": [4, 8], "hidden": 16}},
    "resnet": {"model": "resnet", "model_args": {"depth": 8, "channels": [4, 8, 8]}},
    "soft_tree": {"model": "soft_tree", "model_args": {"depth": 2}},
}


@pytest.mark.parametrize("student", list(STUDENTS))
@pytest.mark.parametrize("method", list_distillers())
def test_every_method_trains_every_student_type_or_refuses_in_one_line(
    ctx, method, student, single_thread
):
    """With its default options: a method works or says, in one line naming it, why not."""
    from kdlens.config import ModelSpec

    config = ctx.config.distill.model_copy(update={"method": method, "options": {}})
    teacher = ctx.build(ctx.config.teacher)
    try:
        d = build_distiller(
            config, ctx.build(ModelSpec(**STUDENTS[student])), teacher, ctx.dataset.input_shape
        )
    except ConfigError as e:
        _one_line_naming(e, method)
        return
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    out = d(batch)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    grads = [p.grad for p in d.student.parameters()]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("method", list_distillers())
def test_a_step_changes_only_student_and_adapter_parameters(ctx, method):
    d = _distiller(ctx, method)
    d.train()
    trainable = {id(p) for p in d.trainable_parameters()}
    student_ids = {id(p) for p in d.student.parameters()}
    assert student_ids <= trainable
    named = dict(d.named_parameters())
    before = {n: p.detach().clone() for n, p in named.items()}
    teacher_state = {k: v.clone() for k, v in d.teacher.state_dict().items()}
    optimizer = make_optimizer(d.trainable_parameters(), ctx.config.student.train)
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    out = d(batch)
    assert out["logits"].shape == (len(batch.y), ctx.dataset.num_classes)
    assert torch.isfinite(out["loss"]) and float(out["loss"].detach()) > 0
    optimizer.zero_grad()
    out["loss"].backward()
    optimizer.step()
    changed = {n for n, p in named.items() if not torch.equal(p.detach(), before[n])}
    assert changed, "nothing trained"
    assert all(id(named[n]) in trainable for n in changed), changed
    assert not any(n.startswith("teacher.") for n in changed)
    for k, v in d.teacher.state_dict().items():
        assert torch.equal(v, teacher_state[k]), k  # weights and BN statistics
    assert any(n.startswith("student.") for n in changed)
    if method == "fitnets":  # the regressor trains with the student
        assert any(n.startswith("regressor.") for n in changed)
        assert len(trainable) > len(student_ids)


@pytest.mark.parametrize("method", list_distillers())
def test_a_student_with_its_own_loss_is_honoured_or_refused_in_one_line(ctx, method):
    """The soft tree brings its own loss (``loss_parts``): a method uses it or says it cannot."""
    from kdlens.config import ModelSpec

    spec = ModelSpec(model="soft_tree", model_args={"depth": 2})
    config = ctx.config.distill.model_copy(update={"method": method})
    teacher = ctx.build(ctx.config.teacher)
    try:
        d = build_distiller(config, ctx.build(spec), teacher, ctx.dataset.input_shape)
    except ConfigError as e:
        assert "\n" not in str(e) and method in str(e) and "own loss" in str(e)
        return
    calls = []
    original = d.student.loss_parts
    d.student.loss_parts = lambda *a, **k: calls.append(1) or original(*a, **k)
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    out = d(batch)
    assert calls, f"{method} ignored the student's own loss"
    assert torch.isfinite(out["loss"])


def test_feature_methods_leave_no_hooks_behind(ctx):
    d = _distiller(ctx, "at")
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    d(batch)
    for model in (d.student, d.teacher):
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_hooks_capture_outputs_and_inputs_by_name():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    x = torch.randn(5, 3)
    with capture(model, ["1", "2:input"]) as store:
        model(x)
    relu = torch.relu(model[0](x))
    assert torch.equal(store["1"], relu) and torch.equal(store["2:input"], relu)
    assert not model[1]._forward_hooks
    with pytest.raises(ConfigError, match=r"no module 'feature'"):
        check_module_names(model, ["feature"], "distill.options.fitnets")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"fitnets": {"teacher_layer": "features.6", "wieght": 1}}, "unknown option 'wieght'"),
        ({"fitnets": {"teacher_layer": "features.6", "student_layer": "nope"}}, "no module 'nope'"),
        ({"fitnest": {}}, "did you mean 'fitnets'"),
        ({"fitnets": {"weight": "big"}}, "expected a number"),
        ({"fitnets": {"alpha": 0.5}}, "unknown option 'alpha'"),
        ({"fitnets": {}}, "name teacher_layer and student_layer"),
        ({"at": {"teacher_layers": ["features.2"], "student_layers": []}}, "same length"),
    ],
)
def test_bad_options_fail_in_one_line(ctx, options, message):
    method = next(iter(options))
    method = "fitnets" if method == "fitnest" else method
    with pytest.raises(ConfigError, match=message) as err:
        _distiller(ctx, method, options=options)
    assert "\n" not in str(err.value)


def test_example_weighting_and_schedules(ctx):
    with pytest.raises(ConfigError, match="does not support"):
        _distiller(ctx, "dkd", example_weighting="confidence")
    sched = ctx.config.distill.alpha_schedule.model_copy(update={"kind": "linear", "end": 0.9})
    d = _distiller(ctx, "kd", alpha=0.1, alpha_schedule=sched, example_weighting="confidence")
    d.set_progress(0, 5)
    assert d.alpha == pytest.approx(0.1)
    d.set_progress(2, 5)
    assert d.alpha == pytest.approx(0.5)
    d.set_progress(4, 5)
    assert d.alpha == pytest.approx(0.9)


def test_training_loop_reports_progress_before_each_epoch(ctx):
    seen = []

    class Recorder(Distiller):
        def set_progress(self, epoch, total_epochs):
            seen.append((epoch, total_epochs))

    cfg = ctx.config.student.train.model_copy(update={"epochs": 3, "max_batches": 1})
    d = Recorder(ctx.build(ctx.config.student))
    fit(d, ctx.train_loader(cfg, 0), ctx.eval_loader("val"), cfg)
    assert seen == [(0, 3), (1, 3), (2, 3)]


def test_dkd_warms_up_linearly(ctx):
    d = _distiller(ctx, "dkd")  # warmup 2 epochs
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    d.set_progress(0, 4)
    first = d(batch)
    d.set_progress(1, 4)
    full = d(batch)
    assert float(first["nckd"]) == pytest.approx(0.5 * float(full["nckd"]), rel=1e-5)
    assert float(first["ce"]) == pytest.approx(float(full["ce"]), rel=1e-6)


def test_labels_are_unused_when_alpha_is_zero(ctx):
    d = _distiller(ctx, "rkd", alpha=0.0)
    batch = next(iter(ctx.train_loader(ctx.config.student.train, 0)))
    shuffled = Batch(batch.x, batch.y.roll(1), batch.index)
    torch.manual_seed(0)
    a = d(batch)["loss"].detach()
    b = d(shuffled)["loss"].detach()
    assert float(a) == pytest.approx(float(b), rel=1e-6)


# Students of every kind kdlens builds, on the smoke data (the teacher is the smoke config's cnn).
STUDENTS = {
    "mlp": {"model": "mlp", "model_args": {"hidden": [16]}},
    "cnn": {"model": "cnn", "model_args": {"channels": [4, 8], "hidden": 16}},
    "resnet": {"model": "resnet", "model_args": {"depth": 8, "channels": [4, 8, 8]}},
    "soft_tree": {"model": "soft_tree", "model_args": {"depth": 2}},
}
# What each method does with each student when given no options (None: either way is fine).
NAMED_LAYERS_ONLY = {"fitnets", "at"}  # no default layers
MAPS_ONLY = {"nst", "kdsvd", "ofd", "reviewkd"}  # need the student's conv feature maps


def _expect_works(method: str, student: str) -> bool | None:
    known = {"kd", "dkd", "rkd", "crd", "vid"} | NAMED_LAYERS_ONLY | MAPS_ONLY
    if method not in known:
        return None
    if student == "soft_tree":
        return method == "kd"
    if method in NAMED_LAYERS_ONLY:
        return False
    return not (student == "mlp" and method in MAPS_ONLY)


@pytest.mark.parametrize("student", STUDENTS)
@pytest.mark.parametrize("method", list_distillers())
def test_every_method_trains_every_student_kind_or_refuses_in_one_line(ctx, method, student):
    from kdlens.config import ModelSpec

    spec = ModelSpec(**STUDENTS[student])
    config = ctx.config.distill.model_copy(update={"method": method, "options": {}})
    n = len(ctx.tensors("train")[1])
    try:
        d = build_distiller(
            config, ctx.build(spec), ctx.build(ctx.config.teacher), ctx.dataset.input_shape, n
        )
        d.train()
        out = d(next(iter(ctx.train_loader(ctx.config.student.train, 0))))
        out["loss"].backward()
        assert torch.isfinite(out["loss"])
        works = True
    except ConfigError as e:
        message = str(e)
        assert "\n" not in message and (
            f"'{method}'" in message or f"distill.options.{method}" in message
        ), message
        works = False
    expected = _expect_works(method, student)
    assert expected is None or works == expected, (method, student, works)
