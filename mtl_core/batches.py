"""The checks of a user's batch dict, written once for both steps.

A step takes ``{task name: (x, y)}`` or ``{task name: (x, y, row_mask)}`` for any subset of the
model's tasks. Each backend turns ``x`` into its own network input; everything else (the dict, the
tuple, the labels, the row counts, the mask) is checked here, with errors that name the task.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, NamedTuple, Sequence

import numpy as np
import scipy.sparse as sp

from mtl_core.labels import canonical_labels
from mtl_core.tasks import TaskSpec


class CheckedBatch(NamedTuple):
    """One task's batch, checked: the backend's network input, canonical labels, the row mask."""

    index: int  # the task's position in the model
    spec: TaskSpec
    x: Any  # what the backend's ``as_input`` made of x
    y: np.ndarray  # canonical labels (mtl_core.labels)
    mask: np.ndarray | None  # float32 (n,) of 0/1 with at least one 1; None when not given


def check_batches(
    batches: Mapping[str, tuple],
    tasks: Sequence[TaskSpec],
    as_input: Callable[[Any], tuple[Any, int]],
    to_numpy: Callable[[Any], np.ndarray] = np.asarray,
) -> list[CheckedBatch]:
    """Check a batch dict against the model's tasks; return its batches in the model's task order.

    ``as_input(x) -> (network input, rows)`` is the backend's conversion of x (it raises for input
    it cannot take); ``to_numpy`` reads labels and masks (e.g. from torch tensors).
    """
    if not isinstance(batches, Mapping) or not batches:
        raise ValueError(f"batches must be a non-empty dict of task name -> (x, y), got {batches!r}")
    names = [t.name for t in tasks]
    unknown = [name for name in batches if name not in names]
    if unknown:
        raise ValueError(f"batches name tasks {unknown} that the model lacks; its tasks are {names}")
    checked = []
    for index, spec in enumerate(tasks):
        if spec.name not in batches:
            continue
        batch = batches[spec.name]
        if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
            raise ValueError(f"the batch of task {spec.name!r} must be (x, y) or (x, y, row_mask), got {type(batch).__name__}")
        _check_finite_input(batch[0], spec)
        x, n = as_input(batch[0])
        y = canonical_labels(to_numpy(batch[1]), spec)
        if y.shape[0] != n:
            raise ValueError(f"the batch of task {spec.name!r} has {n} rows of x but {y.shape[0]} labels")
        if n == 0:
            raise ValueError(f"the batch of task {spec.name!r} is empty")
        mask = None if len(batch) == 2 else _checked_mask(to_numpy(batch[2]), n, spec)
        checked.append(CheckedBatch(index, spec, x, y, mask))
    return checked


def _check_finite_input(x, spec: TaskSpec) -> None:
    """NaN or inf in x would make the step's update NaN, and every weight with it, without a word.

    Host input (numpy, scipy) is checked; a framework's tensors are not, since reading them back
    would wait for the device on every step.
    """
    if sp.issparse(x):
        csr = x if x.format == "csr" else x.tocsr()
        finite = np.isfinite(csr.data)
        if finite.all():
            return
        row = int(np.searchsorted(csr.indptr, np.flatnonzero(~finite)[0], side="right") - 1)
    elif isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.inexact) and x.ndim == 2:
        finite_rows = np.isfinite(x).all(axis=1)
        if finite_rows.all():
            return
        row = int(np.flatnonzero(~finite_rows)[0])
    else:
        return
    raise ValueError(f"x of task {spec.name!r} holds NaN or inf (first at row {row})")


def _checked_mask(mask: np.ndarray, n: int, spec: TaskSpec) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != (n,) or not np.all((mask == 0) | (mask == 1)) or not mask.any():
        raise ValueError(f"the row mask of task {spec.name!r} must be 0/1 of shape ({n},) with a 1, got shape {mask.shape}")
    return mask.astype(np.float32)
