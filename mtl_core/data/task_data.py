"""``TaskData``: one task's examples, checked once when they enter the library."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from mtl_core.array_ops import holds_real_numbers
from mtl_core.labels import canonical_labels
from mtl_core.tasks import TaskSpec


def as_csr(X, what: str) -> sp.csr_matrix:
    """A float32 CSR copy of ``X`` (scipy sparse or a dense 2-D array), checked to be finite."""
    if sp.issparse(X):
        matrix = sp.csr_matrix(X, dtype=np.float32, copy=True)
    elif isinstance(X, np.ndarray):
        if X.ndim != 2:
            raise ValueError(f"{what} must be 2-D (n, input_dim), got shape {X.shape}")
        if not holds_real_numbers(X.dtype):
            raise TypeError(f"{what} must hold real numbers, got dtype {X.dtype}")
        matrix = sp.csr_matrix(X.astype(np.float32))
    else:
        raise TypeError(f"{what} must be a scipy.sparse matrix (CSR) or a 2-D numpy array, got {type(X).__name__}")
    if not np.all(np.isfinite(matrix.data)):
        bad = np.flatnonzero(~np.isfinite(matrix.data))[0]
        row = int(np.searchsorted(matrix.indptr, bad, side="right") - 1)
        raise ValueError(f"{what} holds NaN or inf (first at row {row})")
    matrix.sum_duplicates()
    matrix.sort_indices()
    return matrix


@dataclass(frozen=True, eq=False)
class TaskData:
    """One task's inputs ``X`` (CSR float32, (n, input_dim)) and labels ``y`` (canonical form).

    The constructor keeps copies: the arrays the caller passed are never modified.
    """

    X: sp.csr_matrix
    y: np.ndarray
    spec: TaskSpec

    def __post_init__(self) -> None:
        if not isinstance(self.spec, TaskSpec):
            raise TypeError(f"spec must be a TaskSpec, got {self.spec!r}")
        X = as_csr(self.X, f"X of task {self.spec.name!r}")
        y = canonical_labels(self.y, self.spec)
        if X.shape[0] == 0:
            raise ValueError(f"task {self.spec.name!r} is empty: X has no rows")
        if X.shape[1] == 0:
            raise ValueError(f"X of task {self.spec.name!r} has no columns")
        if y.shape[0] != X.shape[0]:
            raise ValueError(
                f"task {self.spec.name!r} has {X.shape[0]} rows of X but {y.shape[0]} labels"
            )

        object.__setattr__(self, "X", X)
        object.__setattr__(self, "y", y)

    def __len__(self) -> int:
        return self.X.shape[0]

    @property
    def input_dim(self) -> int:
        return self.X.shape[1]

    def classes(self) -> int:
        """How many classes the labels hold (binary and multiclass tasks; 0 for the other kinds)."""
        return len(np.unique(self.y)) if self.spec.kind in ("binary", "multiclass") else 0

    def subset(self, rows: np.ndarray) -> "TaskData":
        """The examples at ``rows`` as a new TaskData."""
        if not isinstance(rows, slice) and np.issubdtype(np.asarray(rows).dtype, np.integer):  # slices and masks need no check
            given = np.asarray(rows)
            outside = given[(given >= len(self)) | (given < -len(self))]
            if outside.size:
                raise IndexError(f"rows of task {self.spec.name!r} must lie in [0, {len(self)}), got {outside[0]}")
        return TaskData(self.X[rows], self.y[rows], self.spec)
