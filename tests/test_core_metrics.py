"""mtl_core.metrics: each kind's metric from logits, as scikit-learn computes it."""

import warnings

import numpy as np
import pytest
from sklearn.metrics import f1_score, mean_squared_error

from mtl_core import TaskSpec
from mtl_core.metrics import METRIC_NAMES, predict_labels, task_metric

RNG = np.random.default_rng(0)
N = 50


def case(kind, k):
    spec = TaskSpec(kind, kind, k)
    logits = RNG.standard_normal((N, k))
    if kind == "multiclass":
        return spec, logits, RNG.integers(0, k, N).astype(np.int32)
    if kind == "regression":
        return spec, logits, RNG.standard_normal((N, k)).astype(np.float32)
    return spec, logits, RNG.integers(0, 2, (N, k)).astype(np.float32)


def test_predict_labels_are_in_canonical_form():
    spec, logits, _ = case("multiclass", 4)
    np.testing.assert_array_equal(predict_labels(spec, logits), logits.argmax(axis=1))
    assert predict_labels(spec, logits).dtype == np.int32
    for kind, k in (("binary", 1), ("multilabel", 3)):
        spec, logits, _ = case(kind, k)
        predicted = predict_labels(spec, logits)
        assert predicted.dtype == np.float32 and predicted.shape == logits.shape
        np.testing.assert_array_equal(predicted, logits > 0)
    spec, logits, _ = case("regression", 2)
    np.testing.assert_array_equal(predict_labels(spec, logits), logits)


def test_binary_metric_is_f1_of_the_positive_class():
    spec, logits, y = case("binary", 1)
    assert task_metric(spec, logits, y) == f1_score(y.ravel(), (logits > 0).ravel(), average="binary")


def test_multiclass_metric_is_macro_f1_over_every_class():
    spec, logits, y = case("multiclass", 4)
    assert task_metric(spec, logits, y) == f1_score(y, logits.argmax(1), average="macro", labels=[0, 1, 2, 3])


def test_multiclass_macro_f1_counts_a_class_absent_from_labels_and_predictions_as_zero():
    spec = TaskSpec("t", "multiclass", 3)
    y = np.array([0, 1, 0, 1], np.int32)
    logits = np.eye(3)[y] * 5  # perfect on classes 0 and 1; class 2 never occurs
    assert task_metric(spec, logits, y) == pytest.approx(2 / 3)


def test_multilabel_metric_is_micro_f1():
    spec, logits, y = case("multilabel", 3)
    assert task_metric(spec, logits, y) == f1_score(y, logits > 0, average="micro")


def test_regression_metric_is_mse():
    spec, logits, y = case("regression", 2)
    assert task_metric(spec, logits, y) == pytest.approx(mean_squared_error(y, logits), rel=1e-12)


def test_perfect_predictions_score_one_and_mse_zero():
    for kind, k in (("binary", 1), ("multiclass", 3), ("multilabel", 2)):
        spec, _, y = case(kind, k)
        logits = np.eye(k)[y] if kind == "multiclass" else np.where(y > 0, 3.0, -3.0)
        assert task_metric(spec, logits, y) == 1.0
    spec, _, y = case("regression", 2)
    assert task_metric(spec, y, y) == 0.0


def test_an_all_negative_binary_prediction_scores_zero_without_warning():
    spec = TaskSpec("t", "binary", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert task_metric(spec, -np.ones((4, 1)), np.array([[0.0], [0.0], [0.0], [0.0]])) == 0.0


def test_metric_names_cover_every_kind():
    assert METRIC_NAMES == {"binary": "f1", "multiclass": "macro_f1", "multilabel": "micro_f1", "regression": "mse"}
