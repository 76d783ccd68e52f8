"""Gradient aggregators: the T task gradients of a step (rows g_i of a Jacobian J (T, P)) become one direction.

Every method needs only the Gramian G = J Jᵀ (T, T): it computes weights w (T,) from G and the
direction is d = wᵀ J. The maths is written once, against an ``ArrayOps`` (mtl_core.array_ops), so the
same algorithm, iteration count and stopping rule runs in numpy, in torch (eagerly) and in jax (jitted).

Conventions shared by every method:
- The weights come from the trace-normalised Gramian Ĝ = G / (tr G / T) (G itself when tr G = 0):
  entries of order 1 in float32, and weights that do not change when J -> kJ, so that every method is
  scale-equivariant: aggregate(kJ) = k aggregate(J) for k > 0.
- The weights are constants for automatic differentiation (the Gramian enters through stop_gradient).
- ``weights`` also returns a residual >= 0: how far the solver is from its optimality conditions, in
  units of Ĝ; 0 for closed forms; inf when a finite input gives no answer (a singular system); NaN when
  the Gramian is not finite. ``aggregator.converged(residual)`` is ``residual <= tol`` (False for NaN).
- The quadratic sub-problems (MGDA, UPGrad) are solved for Q = Ĝ + RIDGE·I, which keeps every masked
  system non-singular when gradients are parallel; it moves a solution by O(RIDGE) relative. CAGrad's
  sub-problem has its own, larger, ``smoothing``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, replace
from types import MappingProxyType
from typing import Callable, ClassVar, Mapping

import numpy as np

from mtl_core.active_set import (
    active_set_minimize,
    dot_rows,
    indicator,
    kkt_residual,
    masked_solve,
    minimize_quadratic,
    ones,
    simplex_centre,
)
from mtl_core.array_ops import ArrayOps

RIDGE = 1e-6  # added to the diagonal of Ĝ (whose mean diagonal is 1) in the quadratic sub-problems
FLOAT32_ROUNDING = 2.0**-24  # float32's unit roundoff, IMTL-G's yardstick in every precision
FLOAT_DTYPES = ("float32", "float64")


def normalized_gramian(gramian, ops: ArrayOps):
    """Ĝ = G / (tr G / T) (T, T), or G itself when tr G is not > 0 (every gradient zero, or NaN)."""
    xp = ops.xp
    scale = xp.trace(gramian) / gramian.shape[0]
    return gramian / xp.where(scale > 0, scale, 1.0)


def _safe_divide(numerator, denominator, ops: ArrayOps):
    """numerator / denominator where the denominator is not 0, else 0 (no inf or NaN is ever formed)."""
    xp = ops.xp
    nonzero = denominator != 0
    return xp.where(nonzero, numerator / xp.where(nonzero, denominator, 1.0), 0.0)


# -- validation ------------------------------------------------------------------------------------------
def _check_int(owner: str, name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}.{name} must be an int >= {low}, got {value!r}")


def _check_real(owner: str, name: str, value, accept: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not accept(value):
        raise ValueError(f"{owner}.{name} must be {expected}, got {value!r}")


def _check_tol(owner: str, tol) -> None:
    _check_real(owner, "tol", tol, lambda v: 0 < v < math.inf, "a finite number > 0")


# -- the aggregators -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Aggregator:
    """Weights of the rows of a Jacobian from their Gramian; d = wᵀ J. Frozen and hashable (a static jit argument)."""

    name: ClassVar[str]  # the command line's spelling
    tol: ClassVar[float] = 0.0  # closed forms: the residual is 0 (NaN for non-finite input)
    random_order: ClassVar[bool] = False  # True for PCGrad, whose weights depend on a drawn task order

    def order(self, key: tuple[int, ...], num_tasks: int):
        """The task order the steps pass to ``weights``: None, except for PCGrad."""
        del key, num_tasks
        return None

    def weights(self, gramian, ops: ArrayOps, order=None):
        """(w (T,), residual ()) for the Gramian (T, T) of the T task gradients; order: PCGrad's (T, T-1) or None."""
        gramian_hat = normalized_gramian(ops.stop_gradient(gramian), ops)
        w, residual = self.normalized_weights(gramian_hat, ops, self._checked_order(order, gramian.shape[0]))
        xp = ops.xp
        residual = xp.where(residual != residual, math.inf, residual)  # a finite input without an answer
        return w, residual + 0.0 * xp.sum(gramian_hat)  # NaN for a non-finite Gramian

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        """(w (T,), residual ()) from the normalised Gramian Ĝ (T, T): the method itself."""
        raise NotImplementedError

    def converged(self, residual) -> bool:
        """Whether a residual returned by ``weights`` says the solver met its tolerance (False for NaN)."""
        return bool(float(residual) <= self.tol)

    def _checked_order(self, order, num_tasks: int):
        if not self.random_order:
            if order is not None:
                raise ValueError(f"{self.name} takes no task order (only pcgrad does), got one of shape {getattr(order, 'shape', None)}")
            return None
        if order is None:
            return self.order((0,), num_tasks)
        _check_order_shape(tuple(getattr(order, "shape", ())), num_tasks)  # a traced order has its shape only
        return order


@dataclass(frozen=True)
class IterativeAggregator(Aggregator):
    """An aggregator whose weights come from an iterative solver: stops at ``tol`` or after ``max_iter`` iterations."""

    tol: float = field(default=1e-4, kw_only=True)
    max_iter: int = field(default=100, kw_only=True)

    def __post_init__(self) -> None:
        _check_tol(type(self).__name__, self.tol)
        _check_int(type(self).__name__, "max_iter", self.max_iter, 1)


def pcgrad_order(seed: int, key: tuple[int, ...], num_tasks: int) -> np.ndarray:
    """(T, T-1) int32: row i is a random order of the tasks j != i, drawn from default_rng([seed, *key])."""
    _check_int("pcgrad_order", "seed", seed, 0)
    _check_int("pcgrad_order", "num_tasks", num_tasks, 1)
    if not isinstance(key, tuple) or any(isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0 for k in key):
        raise ValueError(f"the pcgrad order's key must be a tuple of ints >= 0, got {key!r}")
    rng = np.random.default_rng([seed, *key])
    others = [np.delete(np.arange(num_tasks), i) for i in range(num_tasks)]
    return np.stack([rng.permutation(row) for row in others]).astype(np.int32).reshape(num_tasks, num_tasks - 1)


def _check_order_shape(shape: tuple[int, ...], num_tasks: int) -> None:
    if shape != (num_tasks, num_tasks - 1):
        raise ValueError(f"the pcgrad order for {num_tasks} tasks must have shape {(num_tasks, num_tasks - 1)}, got {shape}")


def check_order(order, num_tasks: int) -> None:
    """Raise unless ``order`` (a concrete array) is (T, T-1) integers with row i a permutation of {j != i}."""
    order = np.asarray(order)
    if not np.issubdtype(order.dtype, np.integer):
        raise TypeError(f"the pcgrad order must hold integers, got dtype {order.dtype}")
    _check_order_shape(order.shape, num_tasks)
    for i, row in enumerate(order):
        if sorted(row.tolist()) != [j for j in range(num_tasks) if j != i]:
            raise ValueError(f"row {i} of the pcgrad order must be a permutation of the tasks other than {i}, got {row.tolist()}")


@dataclass(frozen=True)
class PCGrad(Aggregator):
    """PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", Algorithm 1).

    Each g_i is projected, in a random order of the tasks j != i, onto the normal plane of the original
    (unprojected) g_j whenever their dot product is negative; d = Σ_i (projected g_i), a sum as in the
    paper. A zero g_j is skipped. The order (T, T-1) comes from ``order(key, num_tasks)``, a numpy draw
    from default_rng([seed, *key]), so both backends use the same one; without one, key (0,) is used.
    Each projected vector is kept as its coefficients C (T, T) on the g's, so only Ĝ is needed.
    """

    seed: int = 0
    name: ClassVar[str] = "pcgrad"
    random_order: ClassVar[bool] = True

    def __post_init__(self) -> None:
        _check_int("PCGrad", "seed", self.seed, 0)

    def order(self, key: tuple[int, ...], num_tasks: int) -> np.ndarray:
        return pcgrad_order(self.seed, key, num_tasks)

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        xp = ops.xp
        eye = ops.eye(gramian_hat.shape[0], gramian_hat)
        against = eye[order]  # (T, T-1, T): against[i, s] = e_j, j the task g_i is projected on at step s
        squared_norms = xp.diagonal(gramian_hat)

        def project(s, coefficients):  # coefficients (T, T): row i is the current projected g_i
            target = against[:, s]
            dots = dot_rows(coefficients @ gramian_hat, target, ops)
            norms = target @ squared_norms
            scale = xp.where(dots < 0, _safe_divide(dots, norms, ops), 0.0)
            return coefficients - scale[:, None] * target

        steps = gramian_hat.shape[0] - 1  # jax traces the body even for 0 steps, with nothing to index
        coefficients = ops.fori_loop(0, steps, project, eye) if steps > 0 else eye
        return xp.sum(coefficients, axis=0), xp.trace(gramian_hat) * 0.0


@dataclass(frozen=True)
class CAGrad(IterativeAggregator):
    """CAGrad (Liu et al. 2021, "Conflict-Averse Gradient Descent for Multi-task Learning", Algorithm 1).

    g0 = the mean gradient; w* = argmin over the simplex of g_wᵀg0 + c‖g0‖‖g_w‖ (g_w = Σ w_i g_i);
    d = g0 + (c‖g0‖ / ‖g_w*‖) g_w*, with c in [0, 1). No 1/(1+c²) rescaling (the official code's
    ``rescale`` option). ‖g_w‖ is taken as sqrt(wᵀ(Ĝ + smoothing·I)w), in the sub-problem and in d
    alike. Where g_w* = 0 (0 in the hull of the g_i, e.g. g_1 = -g_2) the paper's d is 0/0 and the
    optimal set of its primal problem is not a point; the smoothing makes d continuous there (the extra
    term fades to 0, d -> g0) and bounds float32 rounding's effect on d (seen over 2500 drawn Jacobians:
    2.6e-5 of the RMS gradient norm, against 7e-4 with 1e-6). It moves d by about smoothing/(2‖g_w*‖²)
    relative to c‖g0‖, in units where Ĝ's mean diagonal is 1 (seen on random Jacobians: 3e-5 of the
    RMS gradient norm). c = 0 or g0 = 0 give d = g0.
    The sub-problem (the official code uses scipy's SLSQP) is solved exactly by the shared active-set
    method: on a face, its minimiser is in closed form (w = a + h/μ, a root of one quadratic), or the
    objective decreases without bound along h and the step goes on to a bound.
    """

    c: float = 0.4
    smoothing: float = 1e-4
    name: ClassVar[str] = "cagrad"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_real("CAGrad", "c", self.c, lambda v: 0 <= v < 1, "a number in [0, 1)")
        _check_real("CAGrad", "smoothing", self.smoothing, lambda v: 0 < v < math.inf, "a finite number > 0")

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        del order
        xp = ops.xp
        num_tasks = gramian_hat.shape[0]
        q = gramian_hat + self.smoothing * ops.eye(num_tasks, gramian_hat)
        mean_dots = (gramian_hat @ ones(num_tasks, gramian_hat, ops))[None, :] / num_tasks  # (1, T): g_iᵀg0
        radius = self.c * xp.sqrt(xp.clip(xp.sum(mean_dots), min=0.0) / num_tasks)  # c‖g0‖
        norm = lambda x: xp.sqrt(dot_rows(x @ q, x, ops))  # noqa: E731 - the smoothed ‖g_x‖ (B,)
        gradient_of = lambda x: mean_dots + radius * (x @ q) / norm(x)[:, None]  # noqa: E731
        start = simplex_centre(mean_dots, ops)
        face_step = self._face_step(q, mean_dots, radius, ops)
        state = active_set_minimize(face_step, gradient_of, start, True, self.tol, self.max_iter, ops)
        weights = 1.0 / num_tasks + radius / norm(state.x)[0] * state.x[0]  # d = g0 + (c‖g0‖ / ‖g_w‖) g_w
        return weights, kkt_residual(state.x, gradient_of(state.x), state.free, True, ops)

    @staticmethod
    def _face_step(q, mean_dots, radius, ops: ArrayOps):
        """face_step of bᵀw + κ‖g_w‖ (b_i = g_iᵀg0, κ = c‖g0‖). On the face F, with Q_F y = 1_F, Q_F z = b_F,
        a = y/Σy and h = (Σz/Σy)y - z: if hᵀQh < κ² its minimiser is a + h/μ, μ² = Σy (κ² - hᵀQh);
        otherwise (h != 0) the objective falls without bound along h."""
        xp = ops.xp

        def face_step(x, free):
            solved = masked_solve(q, free, xp.stack([mean_dots, ones(x.shape, x, ops)], axis=2), ops)
            z, y = solved[:, :, 0], solved[:, :, 1]
            sum_y = xp.sum(y, axis=1)
            h = (xp.sum(z, axis=1) / sum_y)[:, None] * y - z  # Σh = 0
            spread = dot_rows(h @ q, h, ops)  # hᵀQh (B,)
            bounded = (spread < radius**2) | (spread <= 0)
            mu = xp.sqrt(xp.clip(sum_y * (radius**2 - spread), min=0.0))
            target = y / sum_y[:, None] + h / xp.where(mu > 0, mu, 1.0)[:, None]
            cap = xp.where(bounded, 1.0, math.inf) * ones(x.shape[0], x, ops)
            return xp.where(bounded[:, None], target - x, h), cap

        return face_step


@dataclass(frozen=True)
class MGDA(IterativeAggregator):
    """MGDA (Désidéri 2012; Sener & Koltun 2018, "Multi-Task Learning as Multi-Objective Optimization").

    w = the min-norm point of the simplex, argmin_{w ∈ Δ} wᵀĜw, d = Σ w_i g_i. Solved exactly by the
    shared active-set method rather than the paper's Frank-Wolfe, which converges sublinearly (for
    T = 2 the active set ends at the closed form in at most two iterations). ``representation=True`` is
    MGDA-UB: the step hands in the Gramian of the gradients with respect to the trunk's output instead
    of its parameters; the weight computation is the same.
    """

    representation: bool = False
    name: ClassVar[str] = "mgda"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.representation, bool):
            raise TypeError(f"MGDA.representation must be a bool, got {self.representation!r}")

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        del order
        num_tasks = gramian_hat.shape[0]
        q = gramian_hat + RIDGE * ops.eye(num_tasks, gramian_hat)
        x, residual = minimize_quadratic(q, q[:1] * 0.0, True, self.tol, self.max_iter, ops)
        return x[0], residual


@dataclass(frozen=True)
class IMTLG(Aggregator):
    """IMTL-G (Liu et al. 2021, "Towards Impartial Multi-task Learning", gradient balance).

    Weights α summing to 1 such that d = Σ α_i g_i has equal projections dᵀu_i on every unit gradient
    u_i = g_i/‖g_i‖ (α may be negative, as in the paper's closed form). In Gramian terms it is the
    (T+1)-square system Σ_i α_i Ĝ_it/sqrt(Ĝ_tt) = ν for every t, Σα = 1, of the paper's (T-1)-square
    one without singling out task 1. A zero gradient has no direction: its weight is 0 and the others
    are impartial among themselves (all zero: α = 0). The system is singular, and d not determined,
    when two gradients share a direction, or when T >= P + 2. The residual bounds the error that float32
    rounding of the system could make in d, in units of the RMS gradient norm, sqrt(T)·2^-24·‖A‖‖A⁻¹‖‖s‖
    (Frobenius norms, A s = e the system; ‖Jᵀδ‖ <= sqrt(tr G)‖δ‖): the same verdict in every precision,
    inf when A is exactly singular, > tol when the system's condition number passes about tol·2^24/sqrt(T).
    """

    tol: float = 1e-4
    name: ClassVar[str] = "imtlg"

    def __post_init__(self) -> None:
        _check_tol("IMTLG", self.tol)

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        del order
        xp = ops.xp
        num_tasks = gramian_hat.shape[0]
        squared_norms = xp.diagonal(gramian_hat)
        has = indicator(squared_norms > 0, gramian_hat, ops)  # (T,)
        projections = gramian_hat / xp.sqrt(xp.where(squared_norms > 0, squared_norms, 1.0))[None, :] * has[None, :]
        eye = ops.eye(num_tasks, gramian_hat)
        rows = projections.T * has[:, None] + eye * (1.0 - has)[:, None]  # (T, T) row t: the projections on u_t
        border = ops.eye(num_tasks + 1, gramian_hat)
        embed, last = border[:, :num_tasks], border[num_tasks]  # (T+1, T), (T+1,)
        anyone = xp.amax(has)
        system = (
            embed @ rows @ embed.T
            - (embed @ has)[:, None] * last[None, :]  # - ν in the equal-projection rows
            + last[:, None] * (embed @ ones(num_tasks, gramian_hat, ops))[None, :]  # Σα in the last row
            + (1.0 - anyone) * last[:, None] * last[None, :]  # no gradient at all: ν = 0, α = 0
        )
        inverse = ops.solve(system, border)  # (T+1, T+1)
        solution = inverse[:, num_tasks] * anyone  # A⁻¹ e, e = (0, ..., 0, 1) when any gradient is non-zero
        frobenius = lambda a: xp.sqrt(xp.sum(a**2))  # noqa: E731
        bound = math.sqrt(num_tasks) * frobenius(system) * frobenius(inverse) * frobenius(solution)
        return solution[:num_tasks], FLOAT32_ROUNDING * bound


@dataclass(frozen=True)
class NashMTL(IterativeAggregator):
    """Nash-MTL (Navon et al. 2022, "Multi-Task Learning as a Bargaining Game").

    α > 0 with Ĝα = 1/α (elementwise), d = Σ α_i g_i. Solved by damped Newton on the strictly convex,
    self-concordant f(α) = ½αᵀĜα - Σ log α_i (Nesterov's steps 1/(1+λ), λ the Newton decrement, keep
    α > 0), from α_i = 1/sqrt(Ĝ_ii). The residual is max_i |α_i (Ĝα)_i - 1|, scale-free; it stops
    after the first Newton step taken from a point whose residual is <= tol, or after max_iter steps
    (quadratic convergence: that step ends near rounding). In float32 the residual's own rounding,
    from cancellation in Ĝα when gradients conflict, reaches 1e-4 (the default tol) in ill-conditioned
    cases, near those without a solution: there the verdict is float32's limit, not the solver's.
    Convention: α is computed for the trace-normalised Ĝ, so d is scale-equivariant; the paper's α for
    G itself would give a direction of norm sqrt(T) whatever the gradients' scale (the official code
    also normalises its Gramian). When no solution exists (a zero gradient, or a non-negative
    combination of the g_i that is 0, e.g. exactly opposite gradients) f is unbounded below, α grows
    geometrically and α_i (Ĝα)_i does not approach 1: the residual says so, with no silent fallback to
    equal weights (the official code's bug). (The Newton decrement is no such witness: it is lost to
    rounding once α has grown.)
    """

    max_iter: int = field(default=50, kw_only=True)
    name: ClassVar[str] = "nash_mtl"

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        del order
        xp = ops.xp
        eye = ops.eye(gramian_hat.shape[0], gramian_hat)
        squared_norms = xp.diagonal(gramian_hat)
        residual_of = lambda alpha: xp.amax(xp.abs(alpha * (gramian_hat @ alpha) - 1.0))  # noqa: E731

        def damped_newton_step(state):  # state: (iteration, α (T,), the residual where the last step started)
            iteration, alpha, _ = state
            gradient = gramian_hat @ alpha - 1.0 / alpha
            step = ops.solve(gramian_hat + eye / alpha[None, :] ** 2, -gradient[:, None])[:, 0]
            decrement = xp.sqrt(xp.clip(-xp.sum(gradient * step), min=0.0))
            return iteration + 1, alpha + step / (1.0 + decrement), residual_of(alpha)

        alpha = 1.0 / xp.sqrt(xp.where(squared_norms > 0, squared_norms, 1.0))
        unstarted = residual_of(alpha) * 0.0 + math.inf  # NaN for a non-finite Ĝ: no step is taken
        _, alpha, _ = ops.while_loop(lambda s: (s[0] < self.max_iter) & (s[2] > self.tol), damped_newton_step, (0, alpha, unstarted))
        return alpha, residual_of(alpha)


@dataclass(frozen=True)
class UPGrad(IterativeAggregator):
    """UPGrad (Quinton & Rey 2024, "Jacobian Descent for Multi-Objective Optimization").

    d = (1/T) Σ_i π(g_i), π the projection onto the dual cone {x: Jx >= 0}. By their Proposition 1,
    π(Jᵀu) = Jᵀv with v = argmin_{v >= u} vᵀĜv; here u_i = e_i / T and w = Σ_i v_i. The T box-constrained
    QPs (x = v - u >= 0) are solved together by the shared active-set method, from v = u.
    """

    name: ClassVar[str] = "upgrad"

    def normalized_weights(self, gramian_hat, ops: ArrayOps, order):
        del order
        num_tasks = gramian_hat.shape[0]
        q = gramian_hat + RIDGE * ops.eye(num_tasks, gramian_hat)
        x, residual = minimize_quadratic(q, q / num_tasks, False, self.tol, self.max_iter, ops)  # row i: p = Q u_i
        return 1.0 / num_tasks + ops.xp.sum(x, axis=0), residual


AGGREGATORS: Mapping[str, Aggregator] = MappingProxyType(
    {
        "pcgrad": PCGrad(),
        "cagrad": CAGrad(),
        "mgda": MGDA(),
        "mgda_ub": MGDA(representation=True),
        "imtlg": IMTLG(),
        "nash_mtl": NashMTL(),
        "upgrad": UPGrad(),
    }
)


def resolve_aggregator(spec) -> Aggregator | None:
    """None -> None; a name in AGGREGATORS -> its default instance; an Aggregator -> itself."""
    if spec is None or isinstance(spec, Aggregator):
        return spec
    if isinstance(spec, str) and spec in AGGREGATORS:
        return AGGREGATORS[spec]
    raise ValueError(f"aggregator must be None, an Aggregator or one of {tuple(AGGREGATORS)}, got {spec!r}")


def describe(aggregator: Aggregator) -> dict:
    """{"name": ..., field: value, ...}: JSON-safe, for reports and checkpoints (``aggregator_from_config`` inverts it)."""
    if not isinstance(aggregator, Aggregator):
        raise TypeError(f"describe takes an Aggregator, got {aggregator!r}")
    return {"name": aggregator.name, **{f.name: getattr(aggregator, f.name) for f in fields(aggregator)}}


def aggregator_from_config(config: Mapping) -> Aggregator:
    """The aggregator ``describe`` wrote: the named default with the given fields replaced."""
    if not isinstance(config, Mapping) or config.get("name") not in AGGREGATORS:
        raise ValueError(f"an aggregator config must be a mapping whose 'name' is one of {tuple(AGGREGATORS)}, got {config!r}")
    default = AGGREGATORS[config["name"]]
    settings = {k: v for k, v in config.items() if k != "name"}
    known = {f.name for f in fields(default)}
    if set(settings) - known:
        raise ValueError(f"{default.name} has no fields {sorted(set(settings) - known)}; it has {sorted(known)}")
    return replace(default, **settings)


def check_inputs(aggregator, shape: tuple[int, ...], dtype: str, what: str) -> Aggregator:
    """The Aggregator ``aggregator`` names; raise unless ``what`` ("jacobian" (T, P) or "gramian" (T, T)) is well formed."""
    resolved = resolve_aggregator(aggregator)
    if resolved is None:
        raise ValueError(f"aggregator must be an Aggregator or one of {tuple(AGGREGATORS)}, got None")
    if len(shape) != 2 or shape[0] < 1 or (what == "gramian" and shape[0] != shape[1]):
        expected = "(T, T) with T >= 1" if what == "gramian" else "(T, P) with T >= 1"
        raise ValueError(f"the {what} must have shape {expected}, got {tuple(shape)}")
    if dtype not in FLOAT_DTYPES:
        raise TypeError(f"the {what} must be float32 or float64, got dtype {dtype}")
    return resolved
