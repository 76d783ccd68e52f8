"""The few array operations the shared maths needs, so that it is written once for every framework.

Loss weightings (mtl_core.weighting) and gradient aggregators (mtl_core.aggregation) work on small
arrays: T task losses, a (T, T) Gramian. Their maths is written once, against an ``ArrayOps``, and
each backend hands in its own: jax's (jittable, loops as ``lax`` loops), torch's (on the model's
device), or numpy's (float64 references in tests). One algorithm, one iteration count, one stopping
rule in both frameworks, by construction rather than by keeping two copies in step.

What ``xp`` must provide, with numpy's meaning in all three frameworks: ``sqrt exp log abs where
stack diagonal trace argmin``, ``sum amax amin`` with ``axis=``, ``clip`` with ``min=``/``max=``.
Everything else that differs between numpy, jax.numpy and torch is a field of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np


def holds_real_numbers(dtype) -> bool:
    """Whether a numpy dtype holds real values: bools, integers, floats; not complex numbers (a cast
    drops their imaginary part), strings or objects."""
    return (np.issubdtype(dtype, np.number) or dtype == bool) and not np.issubdtype(dtype, np.complexfloating)


@dataclass(frozen=True)
class ArrayOps:
    """A framework's array module plus the operations whose spelling or semantics differ."""

    xp: Any  # numpy, jax.numpy or torch
    asarray: Callable[[Any, Any], Any]  # (values, like) -> array with like's dtype and device
    eye: Callable[[int, Any], Any]  # (n, like) -> (n, n) identity with like's dtype and device
    solve: Callable[[Any, Any], Any]  # A (..., n, n), B (..., n, k) -> X with A X = B; singular A: inf/nan, no raise
    stop_gradient: Callable[[Any], Any]  # the value, cut from automatic differentiation
    while_loop: Callable[[Callable, Callable, Any], Any]  # (cond, body, carry) -> carry
    fori_loop: Callable[[int, int, Callable, Any], Any]  # (lower, upper, body(i, carry), carry) -> carry


def _numpy_solve(a, b):
    with np.errstate(all="ignore"):
        try:
            return np.linalg.solve(a, b)
        except np.linalg.LinAlgError:
            return np.full(np.broadcast_shapes(a.shape[:-1], b.shape), np.nan, dtype=np.result_type(a, b))


def python_while_loop(cond, body, carry):
    """``lax.while_loop``'s contract, run eagerly (numpy and torch)."""
    while bool(cond(carry)):
        carry = body(carry)
    return carry


def python_fori_loop(lower: int, upper: int, body, carry):
    """``lax.fori_loop``'s contract, run eagerly (numpy and torch)."""
    for i in range(lower, upper):
        carry = body(i, carry)
    return carry


NUMPY_OPS = ArrayOps(
    xp=np,
    asarray=lambda values, like: np.asarray(values, dtype=np.asarray(like).dtype),
    eye=lambda n, like: np.eye(n, dtype=np.asarray(like).dtype),
    solve=_numpy_solve,
    stop_gradient=lambda x: x,
    while_loop=python_while_loop,
    fori_loop=python_fori_loop,
)
