"""Label checking: every kind of task gets its labels in one canonical shape and dtype.

Canonical forms (what batches and losses use):
  binary      float32 (n, 1) of 0/1      multiclass  int32 (n,) in [0, num_outputs)
  multilabel  float32 (n, k) of 0/1      regression  float32 (n, k), finite
"""

from __future__ import annotations

import numpy as np

from mtl_core.array_ops import holds_real_numbers
from mtl_core.tasks import TaskSpec


def _as_array(y, spec: TaskSpec) -> np.ndarray:
    if hasattr(y, "toarray"):
        raise TypeError(f"labels of task {spec.name!r} must be a dense numpy array, got a sparse matrix")
    try:
        array = np.asarray(y)
    except Exception as error:  # ragged lists and the like
        raise TypeError(f"labels of task {spec.name!r} must be array-like, got {type(y).__name__}: {error}") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise TypeError(f"labels of task {spec.name!r} must be numeric, got dtype {array.dtype}")
    if not holds_real_numbers(array.dtype):
        raise TypeError(f"labels of task {spec.name!r} must be real numbers, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"labels of task {spec.name!r} must have one row per example, got a scalar")
    return array


def _check_finite(array: np.ndarray, spec: TaskSpec) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array)):
        bad = int(np.flatnonzero(~np.isfinite(array).reshape(len(array), -1).all(axis=1))[0])
        raise ValueError(f"labels of task {spec.name!r} hold NaN or inf (first at row {bad})")


def _check_01(array: np.ndarray, spec: TaskSpec) -> None:
    bad = (array != 0) & (array != 1)
    if np.any(bad):
        row = int(np.flatnonzero(bad.reshape(len(array), -1).any(axis=1))[0])
        raise ValueError(
            f"{spec.kind} labels of task {spec.name!r} must be 0 or 1, got {array.reshape(len(array), -1)[row]} at row {row}"
        )


def _column_matrix(array: np.ndarray, spec: TaskSpec) -> np.ndarray:
    """Accept (n, k), or (n,) when k == 1, and return (n, k)."""
    k = spec.num_outputs
    if array.ndim == 1 and k == 1:
        return array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != k:
        expected = "(n,) or (n, 1)" if k == 1 else f"(n, {k})"
        raise ValueError(f"{spec.kind} labels of task {spec.name!r} must have shape {expected}, got {array.shape}")
    return array


def canonical_labels(y, spec: TaskSpec) -> np.ndarray:
    """Check labels against their task's kind and return a new array in canonical form."""
    array = _as_array(y, spec)
    _check_finite(array, spec)
    if spec.kind == "multiclass":
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise ValueError(
                f"multiclass labels of task {spec.name!r} must be class ids of shape (n,), got {array.shape}"
            )
        if not np.all(array == np.round(array)):
            row = int(np.flatnonzero(array != np.round(array))[0])
            raise ValueError(f"multiclass labels of task {spec.name!r} must be integers, got {array[row]} at row {row}")
        out_of_range = (array < 0) | (array >= spec.num_outputs)
        if np.any(out_of_range):
            row = int(np.flatnonzero(out_of_range)[0])
            raise ValueError(
                f"multiclass labels of task {spec.name!r} must lie in [0, {spec.num_outputs}), "
                f"got {array[row]} at row {row}"
            )
        return array.astype(np.int32)
    array = _column_matrix(array, spec)
    if spec.kind in ("binary", "multilabel"):
        _check_01(array, spec)
    with np.errstate(over="ignore"):  # reported below, naming the row
        labels = array.astype(np.float32)
    if not np.all(np.isfinite(labels)):
        row = int(np.flatnonzero(~np.isfinite(labels).all(axis=1))[0])
        raise ValueError(f"labels of task {spec.name!r} exceed float32's range (about 3.4e38): {array[row]} at row {row}")
    return labels
