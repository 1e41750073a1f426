"""kdlens.sklearn.DistilledClassifier: scikit-learn conventions, known scores, check_estimator."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from kdlens.sklearn import DistilledClassifier


@pytest.fixture(scope="module")
def data():
    x, y = load_breast_cancer(return_X_y=True)
    return train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)


@pytest.fixture(scope="module")
def teacher(data):
    x_train, _, y_train, _ = data
    return GradientBoostingClassifier(n_estimators=30, random_state=0).fit(x_train, y_train)


def test_tree_student_scores_are_the_ones_sklearn_would_give(data, teacher):
    x_train, x_test, y_train, y_test = data
    student = DecisionTreeClassifier(max_depth=3, random_state=0)
    clf = DistilledClassifier(teacher, student, random_state=0)
    assert clf.fit(x_train, y_train, eval_set=(x_test, y_test)) is clf
    assert clf.teacher_ is teacher  # fitted already: used as it is
    assert clf.student_ is not student and not hasattr(student, "tree_")  # params untouched
    agreement = np.mean(clf.predict(x_train) == teacher.predict(x_train))
    assert clf.fidelity_ == pytest.approx(agreement)
    assert clf.teacher_score_ == pytest.approx(teacher.score(x_test, y_test))
    scratch = DecisionTreeClassifier(max_depth=3, random_state=0).fit(x_train, y_train)
    assert clf.scratch_score_ == pytest.approx(scratch.score(x_test, y_test))
    assert clf.student_score_ == pytest.approx(clf.score(x_test, y_test))
    assert clf.student_.get_depth() <= 3
    np.testing.assert_allclose(clf.predict_proba(x_test).sum(1), 1.0)


def test_scores_default_to_the_training_data_and_labels_keep_their_names(data):
    x_train, _, y_train, _ = data
    names = np.array(["benign", "malignant"])[1 - y_train]
    clf = DistilledClassifier(
        GradientBoostingClassifier(n_estimators=10),
        DecisionTreeClassifier(max_depth=2),
        random_state=0,
    ).fit(x_train, names)
    assert list(clf.classes_) == ["benign", "malignant"]
    assert set(clf.predict(x_train[:20])) <= set(names)
    assert clf.teacher_score_ == pytest.approx(clf.teacher_.score(x_train, names))
    assert clf.student_score_ == pytest.approx(clf.score(x_train, names))


def test_augmented_copies_add_rows_but_not_weight(data, teacher):
    """The student's soft rows always weigh as much as the labelled examples, so a regularised
    student is not weakened by copies."""
    x_train, _, y_train, _ = data
    for transfer in ("train", "augmented"):
        clf = DistilledClassifier(
            teacher,
            DecisionTreeClassifier(max_depth=3),
            transfer=transfer,
            n_copies=3,
            random_state=0,
        ).fit(x_train, y_train)
        root_weight = clf.student_.tree_.weighted_n_node_samples[0]
        assert root_weight == pytest.approx(len(x_train))
        assert 0.5 < clf.fidelity_ <= 1.0


def test_temperature_is_undone_when_predicting(data, teacher):
    x_train, x_test, y_train, _ = data
    clf = DistilledClassifier(teacher, DecisionTreeClassifier(max_depth=3), temperature=3.0)
    clf.fit(x_train, y_train)
    q = np.maximum(clf.student_.predict_proba(x_test), 1e-12)
    expected = q**3 / (q**3).sum(1, keepdims=True)  # softmax(T log q)
    np.testing.assert_allclose(clf.predict_proba(x_test), expected, rtol=1e-6)


def test_mlp_student_is_trained_by_kdlens(data, teacher, single_thread):
    x_train, x_test, y_train, y_test = data
    clf = DistilledClassifier(
        teacher, "mlp", student_args={"hidden": [16]}, epochs=15, random_state=0
    ).fit(x_train, y_train, eval_set=(x_test, y_test))
    assert clf.fidelity_ == pytest.approx(np.mean(clf.predict(x_train) == teacher.predict(x_train)))
    assert clf.fidelity_ > 0.85 and clf.student_score_ > 0.85  # learned something
    assert 0.0 <= clf.scratch_score_ <= 1.0
    again = DistilledClassifier(
        teacher, "mlp", student_args={"hidden": [16]}, epochs=15, random_state=0
    ).fit(x_train, y_train)
    np.testing.assert_allclose(again.predict_proba(x_test), clf.predict_proba(x_test), rtol=1e-5)


def test_students_and_teachers_that_cannot_take_part(data):
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import LinearSVC

    x_train, _, y_train, _ = data
    with pytest.raises(ValueError, match="takes no sample_weight"):
        DistilledClassifier(student=KNeighborsClassifier()).fit(x_train[:100], y_train[:100])
    with pytest.raises(ValueError, match="has no predict_proba"):
        DistilledClassifier(teacher=LinearSVC()).fit(x_train[:100], y_train[:100])


@parametrize_with_checks(
    [DistilledClassifier(GradientBoostingClassifier(n_estimators=10), DecisionTreeClassifier())]
)
def test_check_estimator_with_a_tree_student(estimator, check):
    check(estimator)


@pytest.mark.slow
@parametrize_with_checks(
    [
        DistilledClassifier(
            GradientBoostingClassifier(n_estimators=10),
            "mlp",
            student_args={"hidden": [16]},
            epochs=60,
        )
    ]
)
def test_check_estimator_with_an_mlp_student(estimator, check):
    check(estimator)
