"""The one comparison the suite makes, and the record of the largest difference it saw.

Relative difference of two arrays: the normwise relative error in the 2-norm (the Frobenius norm
of the array taken as one vector), with a floor, the scale below which rounding is absolute:

    rel(a, b) = ||a - b||_2 / max(||b||_2, floor)

It is the textbook measure of how far one computed vector is from another (Higham, *Accuracy and
Stability of Numerical Algorithms*, ch. 1), and the one that suits Adam: an entry whose true
gradient lies below float32 resolution is rounding noise that Adam's m/(sqrt(v)+eps) turns into a
step of up to lr in either backend, so entrywise measures (and the max norm) fail arrays that agree
to 1e-7 everywhere else. The 2-norm weighs that entry by its share of the array. A wrong entry as
large as rtol * ||b|| still fails, and the float64 tests (tolerance 1e-10) leave no room for any.
NaN and inf must sit at the same places in both arrays; integer arrays (step counts) compare alike.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Mapping

import numpy as np
import pytest

from parity_tests.tolerances import Tolerance

# {tolerance key: {"value": largest relative difference seen, "comparisons": comparisons made}}
RECORDS: dict[str, dict] = {}
# {tolerance key: {"value": smallest relative difference a negative control caught, "comparisons": ...}}
DETECTIONS: dict[str, dict] = {}
_expecting_mismatch = False


def as_numpy(value) -> np.ndarray:
    """A numpy copy of a numpy / jax / torch array or a Python number."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    return np.array(value)


def flatten(tree, prefix: tuple = ()) -> dict[tuple, np.ndarray]:
    """{key path: array} of a nest of mappings, lists and tuples of arrays (paths are tuples, so
    that task names holding "/" or "." can never make two leaves collide)."""
    if isinstance(tree, Mapping):
        items = list(tree.items())
    elif isinstance(tree, (list, tuple)):
        items = list(enumerate(tree))
    else:
        return {prefix: as_numpy(tree)}
    leaves: dict[tuple, np.ndarray] = {}
    for key, value in items:
        leaves.update(flatten(value, prefix + (key,)))
    return leaves


def path_text(path: tuple) -> str:
    return "/".join(repr(key) if isinstance(key, str) else str(key) for key in path)


def relative_difference(actual, expected, floor: float) -> float:
    """||a - b||_2 / max(||b||_2, floor) over the finite entries; 0 for identical arrays."""
    a, b = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    finite = np.isfinite(b)
    diff = float(np.linalg.norm(a[finite] - b[finite]))
    if diff == 0.0:
        return 0.0
    scale = max(float(np.linalg.norm(b[finite])), floor)
    return diff / scale if scale > 0 else math.inf


def _same_non_finite(a: np.ndarray, b: np.ndarray) -> bool:
    """NaN at the same places, and inf of the same sign at the same places."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(np.where(np.isinf(a), a, 0), np.where(np.isinf(b), b, 0))


def _structure_problems(actual: dict, expected: dict, exact: bool) -> list[str]:
    problems = []
    missing, extra = sorted(set(expected) - set(actual), key=str), sorted(set(actual) - set(expected), key=str)
    if missing or extra:
        missing, extra = [path_text(p) for p in missing], [path_text(p) for p in extra]
        problems.append(f"different leaves: missing {missing}, unexpected {extra}")
    for path in [p for p in expected if p in actual]:
        a, b, name = actual[path], expected[path], path_text(path)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} vs expected {b.shape}")
        elif exact and a.dtype != b.dtype:
            problems.append(f"{name}: dtype {a.dtype} vs expected {b.dtype}")
        elif not _same_non_finite(a, b):
            problems.append(f"{name}: NaN/inf at different places")
    return problems


def _record(table: dict, key: str, value: float, keep) -> None:
    entry = table.setdefault(key, {"value": value, "comparisons": 0})
    entry["value"] = keep(entry["value"], value)
    entry["comparisons"] += 1


def assert_close_trees(actual, expected, tol: Tolerance, what: str = "") -> float:
    """Assert two nests of arrays agree within ``tol``; return the largest relative difference.

    Structure (paths, shapes, NaN/inf places, and dtypes when ``tol`` is exact) is checked before
    values. The failure names every leaf that differs, worst first.
    """
    actual, expected = flatten(actual), flatten(expected)
    problems = _structure_problems(actual, expected, tol.exact)
    if problems:
        raise AssertionError(f"{what} [{tol.key}]: trees differ in structure:\n  " + "\n  ".join(problems))
    diffs = {path: relative_difference(actual[path], expected[path], tol.floor) for path in expected}
    worst = max(diffs.values(), default=0.0)
    if not _expecting_mismatch:
        _record(RECORDS, tol.key, worst, max)
    bad = sorted(((d, path_text(p)) for p, d in diffs.items() if not d <= tol.rtol), reverse=True)
    if bad:
        if _expecting_mismatch:
            _record(DETECTIONS, tol.key, worst, min)
        lines = [f"{p}: relative difference {d:.3g}" for d, p in bad[:8]]
        raise AssertionError(
            f"{what} [{tol.key}]: {len(bad)} of {len(diffs)} arrays differ by more than rtol={tol.rtol:g} "
            f"(floor {tol.floor:g}):\n  " + "\n  ".join(lines)
        )
    return worst


@contextmanager
def expect_mismatch():
    """For negative controls: the block must fail ``assert_close_trees``; recorded as a detection."""
    global _expecting_mismatch
    _expecting_mismatch = True
    try:
        with pytest.raises(AssertionError, match="arrays differ by more than"):
            yield
    finally:
        _expecting_mismatch = False
