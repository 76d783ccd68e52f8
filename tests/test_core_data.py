"""mtl_core.data: TaskData (checked copies) and the synthetic review generator."""

import numpy as np
import pytest
import scipy.sparse as sp

from mtl_core import TaskSpec
from mtl_core.data import DEFAULT_TASKS, TaskData, synthetic_reviews

MOVIE = TaskSpec("movie", "binary", 1)
YELP = TaskSpec("yelp", "multiclass", 3)
SCORE = TaskSpec("score", "regression", 2)
SMALL = dict(vocab_size=100, review_length=10, signal_words=5)


def unsorted_csr_with_duplicates() -> sp.csr_matrix:
    """2 x 4 CSR whose row 0 lists column 3 before column 1 and column 1 twice."""
    data = np.array([1.0, 2.0, 3.0, 4.0])
    indices = np.array([3, 1, 1, 0], np.int32)
    indptr = np.array([0, 3, 4], np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(2, 4))


def test_taskdata_converts_dense_inputs_to_float32_csr():
    X = np.array([[0, 2], [1, 0], [0, 0]], np.int64)
    data = TaskData(X, [1, 0, 1], MOVIE)
    assert sp.isspmatrix_csr(data.X) and data.X.dtype == np.float32
    np.testing.assert_array_equal(data.X.toarray(), X)
    assert data.y.shape == (3, 1) and data.y.dtype == np.float32
    assert len(data) == 3 and data.input_dim == 2


def test_taskdata_sums_duplicates_and_sorts_indices_without_changing_the_matrix():
    X = unsorted_csr_with_duplicates()
    data = TaskData(X, [0, 2], YELP)
    assert data.X.has_canonical_format
    np.testing.assert_array_equal(data.X.toarray(), X.toarray())


def test_taskdata_never_mutates_the_callers_arrays():
    X = unsorted_csr_with_duplicates()
    X_parts = (X.data.copy(), X.indices.copy(), X.indptr.copy())
    y = np.array([[0.5, 1.0], [2.0, 3.0]], np.float64)
    y_before = y.copy()
    TaskData(X, y, SCORE)
    for before, after in zip(X_parts, (X.data, X.indices, X.indptr)):
        np.testing.assert_array_equal(before, after)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, y_before)


def test_taskdata_keeps_copies_independent_of_the_callers_arrays():
    X = np.eye(3, dtype=np.float32)
    X_sparse = sp.csr_matrix(X)
    y = np.array([0, 1, 2])
    from_dense, from_sparse = TaskData(X, y, YELP), TaskData(X_sparse, y, YELP)
    X[0, 0], X_sparse.data[0], y[0] = 9.0, 9.0, 2
    for data in (from_dense, from_sparse):
        np.testing.assert_array_equal(data.X.toarray(), np.eye(3))
        np.testing.assert_array_equal(data.y, [0, 1, 2])


def test_subset_picks_rows_of_inputs_and_labels():
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    data = TaskData(X, [0, 1, 2, 0], YELP).subset(np.array([3, 1]))
    np.testing.assert_array_equal(data.X.toarray(), X[[3, 1]])
    np.testing.assert_array_equal(data.y, [0, 1])
    assert data.spec == YELP
    with pytest.raises(IndexError, match=r"rows of task 'yelp' must lie in \[0, 4\), got 7"):
        TaskData(X, [0, 1, 2, 0], YELP).subset(np.array([0, 7]))


@pytest.mark.parametrize(
    "X, y, spec, error, pattern",
    [
        (np.array([[np.nan, 1.0]]), [1], MOVIE, ValueError, r"X of task 'movie' holds NaN or inf \(first at row 0\)"),
        (np.full((2, 2), "a"), [0, 1], MOVIE, TypeError, r"X of task 'movie' must hold real numbers, got dtype <U1"),
        (np.ones((2, 2)), np.array([[1.0, 0.0], [1e300, 0.0]]), SCORE, ValueError, r"exceed float32's range .* at row 1"),
        (np.ones((2, 2)), np.array([[1.0, 0.0], [1j, 0.0]]), SCORE, TypeError, r"must be real numbers, got dtype complex128"),
        (sp.csr_matrix(np.array([[0, 1.0], [np.inf, 0]])), [1, 0], MOVIE, ValueError, r"NaN or inf \(first at row 1\)"),
        (np.ones((2, 2)), [1.0, 2.0], SCORE, ValueError, r"shape \(n, 2\), got \(2,\)"),
        (np.ones((2, 2)), [[1.0, 0.0], [np.nan, 0.0]], SCORE, ValueError, r"labels of task 'score' hold NaN or inf \(first at row 1\)"),
        (np.ones((0, 2)), np.zeros(0), MOVIE, ValueError, r"task 'movie' is empty"),
        (np.ones((2, 0)), [0, 1], MOVIE, ValueError, r"X of task 'movie' has no columns"),
        (np.ones((3, 2)), [0, 1], MOVIE, ValueError, r"3 rows of X but 2 labels"),
        (np.ones(3), [0, 1, 1], MOVIE, ValueError, r"must be 2-D \(n, input_dim\), got shape \(3,\)"),
        ([[1.0, 2.0]], [1], MOVIE, TypeError, r"got list"),
        (np.ones((2, 2)), [0, 3], YELP, ValueError, r"\[0, 3\), got 3 at row 1"),
        (np.ones((2, 2)), [0, 1], "movie", TypeError, r"spec must be a TaskSpec, got 'movie'"),
    ],
)
def test_taskdata_rejects_bad_inputs_and_labels(X, y, spec, error, pattern):
    with pytest.raises(error, match=pattern):
        TaskData(X, y, spec)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [(dict(n_train=2.5), r"n_train of task 'movie' must be an int >= 0, got 2\.5"), (dict(n_test=-1), r"n_test of task 'movie' must be an int"),
     (dict(seed=-1), r"seed must be an int >= 0, got -1"), (dict(seed=2**63), r"seed must be an int in \[0, 2\*\*63\)")],
)
def test_synthetic_reviews_refuse_sizes_and_seeds_that_are_not_counts(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        synthetic_reviews(DEFAULT_TASKS, vocab_size=500, **kwargs)


def test_synthetic_reviews_default_tasks_are_the_blogs():
    assert [(t.name, t.kind, t.num_outputs) for t in DEFAULT_TASKS] == [("movie", "binary", 1), ("yelp", "multiclass", 3)]


def test_synthetic_reviews_have_the_requested_sizes_and_label_forms():
    tasks = (MOVIE, YELP, SCORE)
    train, test = synthetic_reviews(tasks, n_train={"movie": 30, "yelp": 20, "score": 10}, n_test=7, **SMALL)
    assert {n: len(d) for n, d in train.items()} == {"movie": 30, "yelp": 20, "score": 10}
    assert {n: len(d) for n, d in test.items()} == {"movie": 7, "yelp": 7, "score": 7}
    for split in (train, test):
        assert all(d.input_dim == 100 and d.spec == t for d, t in zip(split.values(), tasks))
        assert set(np.unique(split["movie"].y)) <= {0.0, 1.0}
        assert split["yelp"].y.dtype == np.int32 and split["score"].y.shape[1] == 2
    assert all(d.X.nnz > 0 and np.all(d.X.data > 0) for d in train.values())


def test_synthetic_reviews_are_the_same_for_the_same_seed_and_differ_for_another():
    first, _ = synthetic_reviews((MOVIE, YELP), n_train=25, n_test=5, seed=3, **SMALL)
    again, _ = synthetic_reviews((MOVIE, YELP), n_train=25, n_test=5, seed=3, **SMALL)
    other, _ = synthetic_reviews((MOVIE, YELP), n_train=25, n_test=5, seed=4, **SMALL)
    for name in ("movie", "yelp"):
        assert (first[name].X != again[name].X).nnz == 0
        np.testing.assert_array_equal(first[name].y, again[name].y)
    assert (first["movie"].X != other["movie"].X).nnz > 0


def test_synthetic_reviews_labels_share_a_sentiment_with_the_signal_words():
    # The labels are readings of the same latent sentiment that picks the signal words, so a
    # perfect task separates its classes by signal: class means of X differ markedly.
    train, _ = synthetic_reviews((MOVIE,), n_train=400, n_test=1, label_noise=0.0, vocab_size=200, review_length=40, signal_words=10, signal_rate=0.5)
    X, y = train["movie"].X.toarray(), train["movie"].y[:, 0]
    assert np.abs(X[y == 1].mean(axis=0) - X[y == 0].mean(axis=0)).max() > 0.5


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(tasks=(TaskSpec("tags", "multilabel", 2),)), r"not 'multilabel' \('tags'\)"),
        (dict(n_train={"movie": 5}), r"n_train names no value for tasks \['yelp'\]"),
        (dict(signal_words=0), r"signal_words=0 must be >= 1"),
        (dict(signal_words=60), r"signal_words=60 must be >= 1 and leave"),
        (dict(signal_rate=1.5), r"signal_rate must lie in \[0, 1\], got 1\.5"),
        (dict(tasks=(MOVIE, MOVIE)), r"duplicates \['movie'\]"),
    ],
)
def test_synthetic_reviews_reject_bad_arguments(kwargs, pattern):
    arguments = dict(tasks=(MOVIE, YELP), n_train=5, n_test=5, vocab_size=100, review_length=5, signal_words=5)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        synthetic_reviews(**arguments)
