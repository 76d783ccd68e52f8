"""mtl_core.labels.canonical_labels: one shape and dtype per kind, clear errors otherwise."""

import numpy as np
import pytest
import scipy.sparse as sp

from mtl_core import TaskSpec
from mtl_core.labels import canonical_labels

BINARY = TaskSpec("movie", "binary", 1)
MULTICLASS = TaskSpec("yelp", "multiclass", 3)
MULTILABEL = TaskSpec("tags", "multilabel", 2)
REGRESSION = TaskSpec("score", "regression", 1)
REGRESSION2 = TaskSpec("scores", "regression", 2)


@pytest.mark.parametrize(
    "spec, y, expected",
    [
        (BINARY, [0, 1, 1], np.array([[0], [1], [1]], np.float32)),
        (BINARY, np.array([[1.0], [0.0]]), np.array([[1], [0]], np.float32)),
        (BINARY, np.array([True, False]), np.array([[1], [0]], np.float32)),
        (MULTICLASS, [2, 0, 1], np.array([2, 0, 1], np.int32)),
        (MULTICLASS, np.array([[2.0], [1.0]]), np.array([2, 1], np.int32)),
        (MULTILABEL, [[0, 1], [1, 1]], np.array([[0, 1], [1, 1]], np.float32)),
        (REGRESSION, np.array([0.5, -2.0], np.float64), np.array([[0.5], [-2.0]], np.float32)),
        (REGRESSION2, np.array([[0.5, 1.5]]), np.array([[0.5, 1.5]], np.float32)),
    ],
)
def test_canonical_labels_have_the_kinds_shape_and_dtype(spec, y, expected):
    out = canonical_labels(y, spec)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


def test_canonical_labels_return_a_new_array():
    y = np.array([[0.0], [1.0]], np.float32)
    out = canonical_labels(y, BINARY)
    out[0, 0] = 1.0
    assert y[0, 0] == 0.0


@pytest.mark.parametrize(
    "spec, y, error, pattern",
    [
        (BINARY, [0, 1, 2], ValueError, r"binary labels of task 'movie' must be 0 or 1, got \[2\] at row 2"),
        (BINARY, [0.5, 1], ValueError, r"got \[0\.5\] at row 0"),
        (BINARY, np.zeros((3, 2)), ValueError, r"shape \(n,\) or \(n, 1\), got \(3, 2\)"),
        (MULTICLASS, [0, 3], ValueError, r"must lie in \[0, 3\), got 3 at row 1"),
        (MULTICLASS, [-1, 0], ValueError, r"got -1 at row 0"),
        (MULTICLASS, [0.0, 1.5], ValueError, r"must be integers, got 1\.5 at row 1"),
        (MULTICLASS, np.zeros((2, 3)), ValueError, r"class ids of shape \(n,\), got \(2, 3\)"),
        (MULTILABEL, [[0, 1, 0]], ValueError, r"shape \(n, 2\), got \(1, 3\)"),
        (MULTILABEL, [0, 1], ValueError, r"shape \(n, 2\), got \(2,\)"),
        (MULTILABEL, [[0, 3]], ValueError, r"multilabel labels of task 'tags' must be 0 or 1, got \[0 3\] at row 0"),
        (REGRESSION, [1.0, np.nan], ValueError, r"task 'score' hold NaN or inf \(first at row 1\)"),
        (REGRESSION2, [[1.0, 2.0], [np.inf, 0.0]], ValueError, r"NaN or inf \(first at row 1\)"),
        (BINARY, np.array([np.nan, 1.0]), ValueError, r"NaN or inf \(first at row 0\)"),
        (REGRESSION, np.array(["a", "b"]), TypeError, r"must be numeric, got dtype <U1"),
        (REGRESSION, np.array([None, 1.0]), TypeError, r"must be numeric, got dtype object"),
        (REGRESSION, 3.0, ValueError, r"one row per example, got a scalar"),
        (REGRESSION, sp.csr_matrix(np.ones((2, 1))), TypeError, r"dense numpy array, got a sparse matrix"),
        (REGRESSION, [[1.0], [2.0, 3.0]], TypeError, r"task 'score' must be array-like"),
    ],
)
def test_canonical_labels_reject_labels_unfit_for_their_kind(spec, y, error, pattern):
    with pytest.raises(error, match=pattern):
        canonical_labels(y, spec)
