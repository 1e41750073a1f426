"""``--space`` and ``--grid``: parsing, and checks against the config before anything runs."""

import pytest

from kdlens.config import load_config
from kdlens.errors import ConfigError
from kdlens.search.space import check_space, parse_grid, parse_space, with_values
from kdlens.search.sweep import grid_cells
from tests.conftest import SMOKE


def test_each_kind_of_spec():
    space = parse_space(
        [
            "distill.temperature=log:1:32",
            "distill.alpha=float:0:1",
            "student.train.epochs=int:10:60",
            "distill.method=choice:kd,dkd,rkd",
            "student.train.lr=log:1e-4:1e-2",
        ]
    )
    t, a, e, m, lr = space.values()
    assert (t.kind, t.low, t.high) == ("log", 1.0, 32.0)
    assert (a.kind, a.low, a.high) == ("float", 0.0, 1.0)
    assert (e.kind, e.low, e.high) == ("int", 10, 60)
    assert m.choices == ("kd", "dkd", "rkd")
    assert (lr.low, lr.high) == (1e-4, 1e-2)  # YAML reads 1e-4 as text; it is still a number
    assert t.spec == "log:1.0:32.0" and m.spec == 'choice:"kd","dkd","rkd"'
    assert t.distribution().log and not a.distribution().log
    assert e.distribution().low == 10 and m.distribution().choices == ("kd", "dkd", "rkd")
    # A value between the bounds is probed too: a float range on an integer field is caught.
    assert len(t.probes()) == 3 and 1 < t.probes()[2] < 32
    assert parse_space(["distill.alpha=choice:0,0.5"])["distill.alpha"].choices == (0, 0.5)


@pytest.mark.parametrize(
    "item, message",
    [
        ("distill.alpha", "expected KEY=SPEC"),
        ("distill.alpha=", "expected KEY=SPEC"),
        ("distill.alpha=uniform:0:1", "unknown kind 'uniform'"),
        ("distill.alpha=float:0", "expected float:LOW:HIGH"),
        ("distill.alpha=float:a:1", "'a' is not a number"),
        ("distill.alpha=float:1:0", "LOW must be below HIGH"),
        ("distill.alpha=float:0.5:0.5", "LOW must be below HIGH"),
        ("distill.temperature=log:0:32", "a log scale needs bounds above 0"),
        ("distill.temperature=log:-1:32", "a log scale needs bounds above 0"),
        ("student.train.epochs=int:1.5:4", "'1.5' is not an integer"),
        ("distill.method=choice:", "choice needs at least one value"),
        ("distill.method=choice:kd,,dkd", "an empty value"),
        ("distill.method=choice:kd,kd", "given twice"),
        ("distill.method=choice:{a: 1}", "must be a number, a string"),
        ("distill.method=choice:[1, 2]", "not valid YAML"),
        ("seed=int:0:4", "set by the search itself"),
        ("teacher.checkpoint=choice:a.pt", "set by the search itself"),
    ],
)
def test_malformed_specs_are_one_line(item, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_space([item])
    assert "\n" not in str(info.value)


def test_space_needs_a_key_once():
    with pytest.raises(ConfigError, match="given twice"):
        parse_space(["distill.alpha=float:0:1", "distill.alpha=float:0:0.5"])
    with pytest.raises(ConfigError, match="at least one --space"):
        parse_space([])


@pytest.mark.parametrize(
    "item, message",
    [
        ("distill.alpah=float:0:1", "unknown field 'distill.alpah'; did you mean 'distill.alpha'"),
        ("distill.alpha=float:0:2", r"distill.alpha=2.0: config: distill.alpha: Input should be"),
        ("distill.temperature=float:-1:4", "greater than 0"),
        ("student.train.epochs=float:1:10", "student.train.epochs.*valid integer"),
        ("student.train.optimizer=choice:adam,lion", "student.train.optimizer"),
    ],
)
def test_space_is_checked_against_the_config(item, message):
    with pytest.raises(ConfigError, match=message):
        check_space(load_config(SMOKE), parse_space([item]))


def test_values_set_typed_fields_and_a_new_model_drops_its_arguments():
    base = load_config(SMOKE)
    config = with_values(base, {"distill.temperature": 2.5, "student.model": "cnn"})
    assert config.distill.temperature == 2.5 and config.student.model_args == {}


def test_parse_grid_reads_yaml_values_and_rejects_bad_keys():
    grid = parse_grid(["distill.method=kd,dkd", "distill.alpha=0, 0.5"])
    assert grid == {"distill.method": ["kd", "dkd"], "distill.alpha": [0, 0.5]}
    assert grid_cells(grid)[1] == {"distill.method": "kd", "distill.alpha": 0.5}
    assert len(grid_cells(grid)) == 4
    for bad, message in [
        (["seed=1,2"], "--seeds"),
        (["distill.alpha"], "KEY=v1"),
        (["a=1", "a=2"], "twice"),
        (["distill.alpha=0,,1"], "empty value"),
        ([], "at least one"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_grid(bad)
