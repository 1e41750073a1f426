import json

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer, load_wine
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from kdlens.cli import main
from kdlens.data import Normalizer
from kdlens.evaluate.metrics import fidelity
from kdlens.readable import (
    SklearnTeacher,
    SoftTargetClassifier,
    SoftTargetLogistic,
    SoftTargetTree,
    TransferSet,
    complexity_curve,
    create_surrogate,
    fit_pair,
    list_surrogates,
    soft_label_rows,
    teacher_probabilities,
)
from tests.conftest import SMOKE


def _transfer(x: np.ndarray, y: np.ndarray, teacher) -> TransferSet:
    norm = (x - x.mean(0)) / x.std(0)
    probs = teacher_probabilities(teacher, torch.as_tensor(norm), x)
    return TransferSet(raw=x, norm=norm, labels=y, teacher_probs=probs)


def test_tree_surrogate_of_a_depth2_tree_teacher_reaches_fidelity_1():
    x, y = load_breast_cancer(return_X_y=True)
    x_train, y_train, x_test = x[:400], y[:400], x[400:]
    teacher = DecisionTreeClassifier(max_depth=2, random_state=0).fit(x_train, y_train)
    transfer = _transfer(x_train, y_train, teacher)
    t_logits = torch.as_tensor(np.log(teacher.predict_proba(x_test) + 1e-12))
    for depth in (2, None):  # a depth-limited and an unlimited surrogate
        kd, scratch = fit_pair("tree", transfer, complexity=depth, temperature=1.0)
        assert kd.soft_ and not scratch.soft_ and kd.max_depth == depth
        assert fidelity(torch.as_tensor(kd.logits(x_test)), t_logits) == 1.0
        assert kd.complexity()["leaves"] <= 4


def test_soft_rows_make_each_leaf_predict_the_mean_teacher_distribution():
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    probs = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.0, 1.0]])
    rows, labels, weights = soft_label_rows(x, probs)
    assert len(rows) == 7 and np.bincount(labels).tolist() == [3, 4]
    assert np.allclose(np.bincount(np.repeat([0, 1, 2, 3], [2, 2, 2, 1]), weights), 1.0)
    stump = SoftTargetTree(max_depth=1)
    assert stump.fit(x, probs) is stump
    assert np.allclose(stump.predict_proba(x), [[0.8, 0.2]] * 2 + [[0.1, 0.9]] * 2)
    assert stump.predict(x).tolist() == [0, 0, 1, 1]
    # Example weights multiply the rows: the first example alone decides the left leaf.
    weighted = SoftTargetTree(max_depth=1).fit(x, probs, sample_weight=[1.0, 0.0, 1.0, 1.0])
    assert np.allclose(weighted.predict_proba(x[:1]), [[0.9, 0.1]])


def test_estimators_follow_scikit_learn_conventions():
    tree = SoftTargetTree(max_depth=3, temperature=2.0)
    assert tree.get_params() == {
        "max_depth": 3, "max_leaf_nodes": None, "temperature": 2.0, "random_state": None,
    }  # fmt: skip
    assert not hasattr(tree, "classes_")  # __init__ stores parameters only
    copy = clone(tree)
    assert copy.get_params() == tree.get_params() and copy is not tree
    assert list_surrogates() == ["ebm", "logistic", "tree"]
    made = create_surrogate("logistic", 0.5, random_state=1)
    assert isinstance(made, SoftTargetLogistic) and made.C == 0.5 and made.random_state == 1
    # Any classifier taking sample_weight can be fitted to soft targets through the wrapper.
    x, y = load_wine(return_X_y=True)
    wrapped = SoftTargetClassifier(DecisionTreeClassifier(max_depth=2), temperature=1.0)
    fitted = wrapped.fit(x, np.eye(3)[y])
    assert fitted is wrapped and wrapped.estimator_.get_depth() == 2
    assert wrapped.n_features_in_ == 13 and wrapped.classes_.tolist() == [0, 1, 2]
    labels = np.array(["a", "b", "c"])[y]  # hard labels keep their names
    assert set(SoftTargetTree(max_depth=2).fit(x, labels).predict(x)) <= {"a", "b", "c"}
    with pytest.raises(ValueError, match="class probabilities"):
        SoftTargetTree().fit(x, np.ones((len(x), 3)))
    from sklearn.neighbors import KNeighborsClassifier

    knn = SoftTargetClassifier(KNeighborsClassifier())
    assert knn.fit(x, y).predict(x[:3]).shape == (3,)  # hard labels need no weights
    with pytest.raises(ValueError, match="takes no sample_weight"):
        knn.fit(x, np.eye(3)[y])


@parametrize_with_checks(
    [SoftTargetTree(random_state=0), SoftTargetClassifier(DecisionTreeClassifier(random_state=0))]
)
def test_check_estimator(estimator, check):
    check(estimator)


def test_temperature_is_undone_and_unseen_classes_get_no_mass():
    x = np.zeros((4, 1))
    probs = np.tile([0.25, 0.0, 0.75], (4, 1))  # class 1 never gets weight
    tree = SoftTargetTree(temperature=4.0).fit(x, probs)
    q = np.array([0.25, 0.0, 0.75]) ** 0.25
    q /= q.sum()  # what the tree fits: softmax(log p / 4)
    assert np.allclose(tree.predict_proba(x[:1])[0], q)
    assert np.allclose(tree.logits(x[:1])[0], 4.0 * np.log(np.maximum(q, 1e-12)))
    hard = SoftTargetTree().fit(x, np.array([0, 2, 2, 2]))
    assert hard.temperature_ == 1.0 and hard.logits(x[:1], 3)[0, 1] == pytest.approx(np.log(1e-12))
    # softmax(T log q) with q = softmax(z / T) gives back softmax(z).
    z = torch.tensor([2.0, -1.0, 0.5])
    q = torch.softmax(z / 4.0, -1)
    assert torch.allclose(torch.softmax(4.0 * q.log(), -1), torch.softmax(z, -1), atol=1e-6)


def test_complexity_curve_scores_every_value_of_both_arms():
    y = torch.tensor([0, 1, 1, 0])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])  # says 0, 1, 1, 1

    def fit_at(value):
        right = torch.nn.functional.one_hot(y, 2).float()
        return {"kd": (teacher, value * 10), "scratch": (right, value)}

    curve = complexity_curve("depth", [1, 2], fit_at, y, teacher)
    assert curve["parameter"] == "depth" and curve["values"] == [1, 2]
    assert curve["kd"] == {"accuracy": [0.75, 0.75], "fidelity": [1.0, 1.0], "size": [10.0, 20.0]}
    assert curve["scratch"]["accuracy"] == [1.0, 1.0] and curve["scratch"]["fidelity"] == [0.75] * 2


def test_any_sklearn_classifier_teaches_through_the_distiller():
    from sklearn.ensemble import GradientBoostingClassifier

    from kdlens.data.loader import Batch
    from kdlens.distill import create_distiller
    from kdlens.models import create_model

    x, y = load_wine(return_X_y=True)
    gbm = GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=0).fit(x, y)
    xt = torch.as_tensor(x, dtype=torch.float32)
    normalizer = Normalizer.fit(xt)
    teacher = SklearnTeacher(gbm, normalizer)
    logits = teacher(normalizer(xt))
    assert torch.allclose(logits.exp(), torch.as_tensor(gbm.predict_proba(x)).float(), atol=1e-5)
    tree = create_model("soft_tree", (13,), 3, depth=2)
    kd = create_distiller("kd", tree, teacher, temperature=2.0, alpha=0.0)
    out = kd(Batch(normalizer(xt[:32]), torch.as_tensor(y[:32]), torch.arange(32)))
    out["loss"].backward()
    assert tree.leaf_logits.grad.abs().sum() > 0
    with pytest.raises(Exception, match="predict_proba"):
        SklearnTeacher(object())


def test_logistic_surrogate_is_sparse_and_fits_soft_targets():
    x, y = load_wine(return_X_y=True)
    norm = (x - x.mean(0)) / x.std(0)
    probs = np.eye(3)[y] * 0.8 + 0.2 / 3
    strong = SoftTargetLogistic(C=0.01).fit(norm, probs)
    weak = SoftTargetLogistic(C=1.0).fit(norm, probs)
    assert strong.complexity()["nonzero_weights"] < weak.complexity()["nonzero_weights"]
    # A soft-target fit is a calibrated-to-the-teacher fit: its confidence is near 0.8, not 1.
    assert 0.6 < weak.predict_proba(norm).max(1).mean() < 0.9


def test_smoke_run_has_the_default_readable_students(smoke_run):
    out, metrics = smoke_run
    models = metrics["models"]
    for name in ("soft_tree_kd", "soft_tree_scratch", "tree_kd", "tree_scratch"):
        assert {"accuracy", "fidelity", "params"} <= set(models[name]), name
    assert {"path_accuracy", "path_fidelity"} <= set(models["soft_tree_kd"])
    curve = metrics["complexity_curves"]["tree"]
    assert curve["values"] == [1, 2, 3] and len(curve["kd"]["fidelity"]) == 3
    for rel in metrics["readable"]["figures"] + metrics["readable"]["rules"]:
        assert (out / rel).is_file(), rel
    assert (out / "figures" / "readable_soft_tree_kd_path.png").is_file()
    assert "|---" in (out / "readable" / "tree_kd_rules.txt").read_text()


def test_every_readable_student_and_sweep_runs_through_the_cli(tmp_path, capsys):
    students = ["soft_tree", "tree", "logistic"]
    try:
        import interpret  # noqa: F401

        students.append("ebm")
    except ImportError:
        pass
    out = tmp_path / "run"
    args = [
        "run", "--config", str(SMOKE), "--out", str(out), "--quiet",
        "--set", "data.limit=600",
        "--set", f"readable.students=[{','.join(students)}]",
        "--set", "readable.sweeps=[tree,logistic,soft_tree]",
        "--set", "readable.sweep_soft_tree_depths=[2]",
        "--set", "readable.sweep_logistic_c=[0.1]",
        "--set", "readable.transfer=augmented",
        "--set", "readable.transfer_copies=1",
        "--set", "readable.surrogate_temperature=2",
    ]  # fmt: skip
    assert main(args) == 0
    assert "Booster" not in capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    for student in students:
        for arm in ("kd", "scratch"):
            m = metrics["models"][f"{student}_{arm}"]
            assert 0.0 <= m["fidelity"] <= 1.0 and m["params"] > 0
    assert set(metrics["complexity_curves"]) == {"tree", "logistic", "soft_tree"}
    assert metrics["readable"]["transfer"]["n_examples"] == 2 * metrics["dataset"]["n_train"]
    assert (out / "figures" / "readable_logistic_kd_weights.png").is_file()


def test_tree_rules_and_figure_come_from_the_json_in_the_inputs_units():
    import matplotlib.pyplot as plt

    from kdlens.readable import dataset_header, describe_tree
    from kdlens.readable.figures import tree_figure, tree_rules

    x = np.array([[0.0, 7.0], [1.0, 7.0], [9.0, 7.0], [10.0, 7.0]])  # raw units, not standardised
    tree = SoftTargetTree(max_depth=2).fit(x, np.array([0, 0, 1, 1]))
    entry = {"name": "tree_scratch", "trained_with": "labels", "tree": describe_tree(tree, 3)}
    entry = json.loads(json.dumps(entry))
    ds = dataset_header("tabular", (2,), ["no", "yes", "never"], ["dose", "age"])
    rules = tree_rules(entry, ds).splitlines()
    assert rules[1:] == [
        "|--- dose <= 5",
        "|   |--- class no (p = 1.00; 50.0% of training weight)",
        "|--- dose >  5",
        "|   |--- class yes (p = 1.00; 50.0% of training weight)",
    ]
    assert "tree_scratch (trained on hard labels)" in rules[0]
    assert entry["tree"]["value"][0] == [0.5, 0.5, 0.0]  # a class never seen keeps its column
    fig = tree_figure(entry, ds)
    assert "dose ≤ 5" in [t.get_text().split("\n")[0] for t in fig.axes[0].texts]
    plt.close(fig)
