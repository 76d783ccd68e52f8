"""Sparse bag-of-words rows in the fixed-width form a jitted first layer needs.

A batch of CSR rows becomes ``indices`` and ``values`` of shape (rows, width): row r's non-zeros
first, then padding with value 0, which adds exactly nothing to ``x @ kernel``.
Widths are rounded up to a quarter-octave bucket (8, 10, 12, 14, 16, 20, ..., 96, 112, 128, 160, ...)
so that a jitted step sees few distinct shapes while padding wastes at most a quarter of the work
(a power of two could waste half: rows of 130 words padded to 256).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

MIN_WIDTH = 8


@dataclass(frozen=True)
class PaddedRows:
    """Sparse rows as padded (index, value) pairs.

    indices: int32 (..., rows, width) column ids in [0, num_features).
    values:  float (..., rows, width), 0 on padding (whose indices are arbitrary valid columns).
    num_features: the number of columns of the matrix the rows came from.
    Holds numpy arrays here; ``jax_impl`` registers the class as a pytree and fills it with jax arrays.
    """

    indices: Any
    values: Any
    num_features: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The dense shape these rows stand for: (..., rows, num_features)."""
        return tuple(self.indices.shape[:-1]) + (self.num_features,)


def bucket_width(max_nnz: int) -> int:
    """The padded width for rows with at most ``max_nnz`` non-zeros: m * 2**e with m in 5..8, >= 8."""
    n = max(int(max_nnz), MIN_WIDTH)
    step = 1 << max(0, (n - 1).bit_length() - 3)  # n / step lies in (4, 8]
    return -(-n // step) * step


def max_row_nnz(X: sp.csr_matrix) -> int:
    return int(np.diff(X.indptr).max(initial=0))


def pad_rows(X: sp.csr_matrix, width: int | None = None, num_rows: int | None = None) -> PaddedRows:
    """Turn CSR rows into PaddedRows, vectorised; ``num_rows`` > n appends empty rows."""
    if not sp.issparse(X):
        raise TypeError(f"pad_rows needs a scipy.sparse matrix, got {type(X).__name__}")
    X = sp.csr_matrix(X)
    n = X.shape[0]
    counts = np.diff(X.indptr)
    needed = int(counts.max(initial=0))
    width = bucket_width(needed) if width is None else int(width)
    if width < needed:
        raise ValueError(f"width {width} is smaller than the longest row ({needed} non-zeros)")
    num_rows = n if num_rows is None else int(num_rows)
    if num_rows < n:
        raise ValueError(f"num_rows {num_rows} is smaller than the number of rows ({n})")
    # Padding slots hold value 0 and point at distinct columns (slot mod num_features), not all at
    # column 0: their zero gradients then do not pile onto one row of the kernel (a scatter-add
    # hot spot that some GPU compilers turn into a slow retry loop).
    indices = np.tile(np.arange(width, dtype=np.int32) % max(X.shape[1], 1), (num_rows, 1))
    values = np.zeros((num_rows, width), dtype=np.float32)
    row_of_entry = np.repeat(np.arange(n), counts)
    slot_of_entry = np.arange(X.nnz) - np.repeat(X.indptr[:-1], counts)
    indices[row_of_entry, slot_of_entry] = X.indices
    values[row_of_entry, slot_of_entry] = X.data
    return PaddedRows(indices=indices, values=values, num_features=X.shape[1])


def stack_padded(matrices: Sequence[sp.csr_matrix], num_rows: int) -> PaddedRows:
    """Pad several CSR batches to one (num_rows, width) and stack them: (len, num_rows, width)."""
    width = bucket_width(max(max_row_nnz(X) for X in matrices))
    padded = [pad_rows(X, width=width, num_rows=num_rows) for X in matrices]
    return PaddedRows(
        indices=np.stack([p.indices for p in padded]),
        values=np.stack([p.values for p in padded]),
        num_features=padded[0].num_features,
    )


def as_csr(rows) -> sp.csr_matrix:
    """Rows as a CSR matrix: scipy sparse as is, PaddedRows with its padding (value 0) kept, dense arrays."""
    if isinstance(rows, PaddedRows):
        n, width = np.shape(rows.indices)
        indptr = np.arange(0, n * width + 1, width)
        return sp.csr_matrix((np.ravel(rows.values), np.ravel(rows.indices), indptr), shape=(n, rows.num_features))
    return sp.csr_matrix(rows)


def row_kernel(blocks: Sequence, dtype=np.float32) -> np.ndarray:
    """K = X Xᵀ (N, N) of the blocks' rows stacked (scipy sparse, PaddedRows or dense arrays).

    The aggregated steps need the inner products of every pair of the step's input rows (see
    torch_ref.jacobian): for bag-of-words rows a sparse product costs sum over columns of their row
    counts squared, far less than any dense or gather formulation.
    """
    stacked = sp.vstack([as_csr(block) for block in blocks], format="csr")
    return np.asarray((stacked @ stacked.T).toarray(), dtype=dtype)
