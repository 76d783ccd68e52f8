"""The shared solver of the aggregators' sub-problems: a primal active-set method, batched, branch-free.

Minimises a convex f over x >= 0 (and optionally Σx = 1) for B problems at once, written against an
``ArrayOps`` (mtl_core.array_ops) so that numpy, torch and jax run the same iterations: every
branch is an ``xp.where``, every update a one-hot product, the loop ``ops.while_loop``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from mtl_core.array_ops import ArrayOps

RELEASE = 0.1  # a bound is freed only when its multiplier is below -RELEASE * tol


def ones(shape, like, ops: ArrayOps):
    return ops.asarray(np.ones(shape), like)


def dot_rows(a, b, ops: ArrayOps):
    """Row-wise dot products (B,) of two (B, T) arrays."""
    return ops.xp.sum(a * b, axis=1)


def indicator(mask, like, ops: ArrayOps):
    """1.0 where ``mask`` is true, else 0.0, in ``like``'s dtype and device."""
    return mask * ones(mask.shape, like, ops)


def masked_solve(q, free, rhs, ops: ArrayOps):
    """X with Q_FF X_F = R_F and X = 0 off F, for each row's free set F.

    q (T, T) positive definite; free (B, T) 0/1; rhs (B, T, K) -> (B, T, K). A held index's row and column
    become the identity's, so the masked system stays as well conditioned as Q_FF.
    """
    eye = ops.eye(q.shape[0], q)
    pairs = free[:, :, None] * free[:, None, :]  # (B, T, T): 1 where row and column are both free
    system = q * pairs + eye * (1.0 - free)[:, None, :]
    return ops.solve(system, rhs * free[:, :, None])


def bound_multipliers(gradient, free, simplex: bool, ops: ArrayOps):
    """λ = ∇f(x) - ν (B, T), the multipliers of the bounds x_i >= 0; ν (of Σx = 1, on the simplex) is the
    gradient's mean over the free set, where it is constant at a face's minimum."""
    if not simplex:
        return gradient
    return gradient - (dot_rows(gradient, free, ops) / ops.xp.sum(free, axis=1))[:, None]


def kkt_residual(x, gradient, free, simplex: bool, ops: ArrayOps):
    """max over the B problems of |min(x_i, λ_i)| (0 iff x is optimal), and of |Σx - 1| on the simplex.

    x, gradient = ∇f(x), free: (B, T).
    """
    xp = ops.xp
    multipliers = bound_multipliers(gradient, free, simplex, ops)
    residual = xp.amax(xp.abs(xp.where(x < multipliers, x, multipliers)), axis=1)
    if simplex:
        infeasibility = xp.abs(xp.sum(x, axis=1) - 1.0)
        residual = xp.where(residual > infeasibility, residual, infeasibility)
    return xp.amax(residual)


class ActiveSet(NamedTuple):
    """The active-set solver's loop state for B problems in T unknowns."""

    iteration: Any  # () int
    x: Any  # (B, T) the current feasible point
    free: Any  # (B, T) 1 where x_i is free, 0 where it is held at its bound 0
    done: Any  # (B,) 1 once x is optimal


def _release_or_finish(free, gradient, blocked, simplex: bool, tol: float, ops: ArrayOps):
    """At a face's minimum (rows not ``blocked``): free the held index of most negative multiplier, or finish.

    free, gradient (B, T); blocked (B,) -> (the freed index's one-hot or 0 (B, T), finished (B,)).
    """
    xp = ops.xp
    held = xp.where(free > 0.5, math.inf, bound_multipliers(gradient, free, simplex, ops))
    release = ~blocked & (xp.amin(held, axis=1) < -RELEASE * tol)
    freed = ops.eye(free.shape[1], free)[xp.argmin(held, axis=1)] * release[:, None]
    return freed, ~blocked & ~release


def active_set_step(state: ActiveSet, face_step, gradient_of, simplex: bool, tol: float, ops: ArrayOps) -> ActiveSet:
    """One iteration: move towards the face's minimum until a bound blocks; at the minimum, free one bound.

    face_step(x, free) -> (step (B, T), cap (B,)): cap 1 when x + step minimises f on the face
    {x_i = 0 off free}, cap inf when f decreases without bound along step on that face.
    """
    xp = ops.xp
    step, cap = face_step(state.x, state.free)
    shrinking = (state.free > 0.5) & (step < 0)
    ratios = xp.where(shrinking, state.x / xp.where(shrinking, -step, 1.0), math.inf)  # (B, T)
    shortest = xp.amin(ratios, axis=1)
    blocked = shortest < cap
    hit = ops.eye(state.x.shape[1], state.x)[xp.argmin(ratios, axis=1)] * blocked[:, None]  # (B, T) one-hot or 0
    x = (state.x + xp.where(blocked, shortest, cap)[:, None] * step) * (1.0 - hit)
    freed, finished = _release_or_finish(state.free, gradient_of(x), blocked, simplex, tol, ops)
    keep = state.done > 0.5
    return ActiveSet(
        state.iteration + 1,
        xp.where(keep[:, None], state.x, x),
        xp.where(keep[:, None], state.free, state.free - hit + freed),
        xp.where(keep, state.done, indicator(finished, state.done, ops)),
    )


def active_set_minimize(face_step, gradient_of, start, simplex: bool, tol: float, max_iter: int, ops: ArrayOps) -> ActiveSet:
    """Minimise a convex f over x >= 0 (and Σx = 1 if ``simplex``) for B problems at once.

    A primal active-set method (Nocedal & Wright, Numerical Optimization, §16.5): each iteration solves
    one masked linear system and adds or frees one bound, so it ends exactly at the optimum after about
    as many iterations as the solution has positive entries; it stops when every held bound's
    multiplier is >= -RELEASE * tol, or after max_iter iterations. ``start`` (B, T): a feasible point
    whose positive entries are the free set.
    """
    xp = ops.xp
    state = ActiveSet(0, start, indicator(start > 0, start, ops), xp.sum(start, axis=1) * 0.0)
    return ops.while_loop(
        lambda s: (s.iteration < max_iter) & (xp.amin(s.done) < 0.5),
        lambda s: active_set_step(s, face_step, gradient_of, simplex, tol, ops),
        state,
    )


def quadratic_face_step(q, linear, simplex: bool, ops: ArrayOps):
    """face_step of f(x) = ½xᵀQx + pᵀx (``linear`` p (B, T)): the face's minimiser, from one masked solve."""
    xp = ops.xp

    def face_step(x, free):
        if not simplex:
            return masked_solve(q, free, -linear[:, :, None], ops)[:, :, 0] - x, ones(x.shape[0], x, ops)
        solved = masked_solve(q, free, xp.stack([-linear, ones(x.shape, x, ops)], axis=2), ops)
        base, spread = solved[:, :, 0], solved[:, :, 1]  # Q_F z = -p_F, Q_F y = 1_F
        nu = (1.0 - xp.sum(base, axis=1)) / xp.sum(spread, axis=1)  # the multiplier of Σx = 1
        return base + nu[:, None] * spread - x, ones(x.shape[0], x, ops)

    return face_step


def simplex_centre(like, ops: ArrayOps):
    """x = 1/T (B, T) for ``like`` (B, T): the start on the simplex, every bound free."""
    return ones(like.shape, like, ops) / like.shape[1]


def minimize_quadratic(q, linear, simplex: bool, tol: float, max_iter: int, ops: ArrayOps):
    """(x (B, T), residual ()) of min ½xᵀQx + pᵀx over x >= 0 (and Σx = 1 if ``simplex``), p = ``linear`` (B, T).

    Starts at 0 on the orthant (every bound held), at the centre on the simplex (every bound free).
    """
    gradient_of = lambda x: x @ q + linear  # noqa: E731 - Q is symmetric
    start = simplex_centre(linear, ops) if simplex else linear * 0.0
    state = active_set_minimize(quadratic_face_step(q, linear, simplex, ops), gradient_of, start, simplex, tol, max_iter, ops)
    return state.x, kkt_residual(state.x, gradient_of(state.x), state.free, simplex, ops)
