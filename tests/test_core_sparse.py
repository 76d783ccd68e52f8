"""mtl_core.sparse: padded (index, value) rows that reproduce X @ W exactly."""

import numpy as np
import pytest
import scipy.sparse as sp

from mtl_core import PaddedRows, pad_rows
from mtl_core.sparse import MIN_WIDTH, bucket_width, max_row_nnz, stack_padded


def random_csr(rows, cols, density, seed):
    return sp.random(rows, cols, density=density, format="csr", dtype=np.float32, random_state=seed)


def padded_matmul(padded: PaddedRows, W: np.ndarray) -> np.ndarray:
    """sum over a row's slots of value * W[index]: what the jitted first layer computes."""
    return np.einsum("...w,...wo->...o", padded.values.astype(np.float64), W[padded.indices])


@pytest.mark.parametrize("seed", range(3))
def test_pad_rows_reproduces_x_times_w(seed):
    X = random_csr(13, 40, 0.2, seed)
    W = np.random.default_rng(seed).standard_normal((40, 5))
    np.testing.assert_allclose(padded_matmul(pad_rows(X), W), X.toarray().astype(np.float64) @ W, rtol=1e-12, atol=1e-12)


def test_pad_rows_sums_duplicate_entries_like_the_matrix():
    X = sp.csr_matrix((np.array([1.0, 2.0, 5.0]), np.array([3, 3, 0]), np.array([0, 2, 3])), shape=(2, 4))
    W = np.arange(8.0).reshape(4, 2)
    np.testing.assert_array_equal(padded_matmul(pad_rows(X), W), X.toarray() @ W)


def test_pad_rows_has_the_documented_shapes_dtypes_and_padding():
    X = sp.csr_matrix(np.array([[0, 2.0, 0, 3.0], [0, 0, 0, 0], [1.0, 0, 0, 0]]))
    padded = pad_rows(X, num_rows=5)
    assert padded.indices.dtype == np.int32 and padded.values.dtype == np.float32
    assert padded.indices.shape == padded.values.shape == (5, MIN_WIDTH)
    assert padded.num_features == 4 and padded.shape == (5, 4)
    np.testing.assert_array_equal(padded.indices[0, :2], [1, 3])
    np.testing.assert_array_equal(padded.values[0, :2], [2.0, 3.0])
    # padding: value 0, so it adds exactly nothing, at valid columns spread over the kernel's rows
    assert not padded.values[0, 2:].any()
    assert not padded.values[1].any() and not padded.values[3:].any()
    np.testing.assert_array_equal(padded.indices[1], np.arange(MIN_WIDTH) % 4)
    assert ((padded.indices >= 0) & (padded.indices < 4)).all()


def test_pad_rows_accepts_any_scipy_sparse_format():
    X = random_csr(6, 10, 0.3, 0)
    for other in (X.tocoo(), X.tocsc()):
        padded, reference = pad_rows(other), pad_rows(X)
        np.testing.assert_array_equal(padded.values, reference.values)
        np.testing.assert_array_equal(padded.indices, reference.indices)


@pytest.mark.parametrize(
    "nnz, width", [(0, 8), (1, 8), (8, 8), (9, 10), (16, 16), (17, 20), (82, 96), (100, 112), (128, 128), (130, 160)]
)
def test_bucket_width_is_the_next_quarter_octave_of_at_least_8(nnz, width):
    assert bucket_width(nnz) == width


def test_bucket_width_wastes_at_most_a_quarter_of_the_padded_width():
    for nnz in range(8, 5000):
        width = bucket_width(nnz)
        assert nnz <= width and (width - nnz) / width < 0.25


def test_pad_rows_uses_the_bucket_width_of_the_longest_row():
    X = sp.csr_matrix(np.ones((2, 11)))
    assert pad_rows(X).indices.shape == (2, 12)
    assert pad_rows(X, width=11).indices.shape == (2, 11)


def test_stack_padded_pads_batches_to_one_shape():
    batches = [random_csr(4, 30, 0.1, 1), random_csr(3, 30, 0.6, 2)]
    stacked = stack_padded(batches, num_rows=5)
    width = bucket_width(max(max_row_nnz(X) for X in batches))
    assert stacked.indices.shape == stacked.values.shape == (2, 5, width)
    assert stacked.shape == (2, 5, 30)
    W = np.random.default_rng(0).standard_normal((30, 3))
    for k, X in enumerate(batches):
        expected = np.zeros((5, 3))
        expected[: X.shape[0]] = X.toarray() @ W
        np.testing.assert_allclose(padded_matmul(stacked, W)[k], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "X, kwargs, error, pattern",
    [
        (np.ones((2, 3)), {}, TypeError, r"needs a scipy\.sparse matrix, got ndarray"),
        (sp.csr_matrix(np.ones((2, 9))), {"width": 8}, ValueError, r"width 8 is smaller than the longest row \(9 non-zeros\)"),
        (sp.csr_matrix(np.ones((3, 2))), {"num_rows": 2}, ValueError, r"num_rows 2 is smaller than the number of rows \(3\)"),
    ],
)
def test_pad_rows_rejects_bad_arguments(X, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        pad_rows(X, **kwargs)
