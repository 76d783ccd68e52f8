"""mtl_core.aggregation in numpy float64: every method against its paper's formula and a scipy reference.

Each check that a method passes has a negative control: a deliberately wrong variant of the method
(or a plausible bug) that must fail the very same check, so that no check passes vacuously.
"""

import json
import math

import numpy as np
import pytest
from scipy.optimize import fsolve, minimize

from mtl_core.aggregation import (
    AGGREGATORS,
    RIDGE,
    CAGrad,
    IMTLG,
    MGDA,
    NashMTL,
    PCGrad,
    UPGrad,
    aggregator_from_config,
    check_order,
    describe,
    normalized_gramian,
    pcgrad_order,
    resolve_aggregator,
)
from mtl_core.array_ops import NUMPY_OPS

SLSQP = dict(method="SLSQP", options=dict(ftol=1e-12, maxiter=1000))


def aggregate(aggregator, jacobian, order=None):
    """(d (P,), w (T,), residual) of ``aggregator`` on ``jacobian`` (T, P), in numpy float64."""
    w, residual = aggregator.weights(jacobian @ jacobian.T, NUMPY_OPS, order)
    return w @ jacobian, w, float(residual)


def conflicting_jacobian(num_tasks: int, dim: int = 6) -> np.ndarray:
    """A fixed (T, 6) Jacobian whose first two gradients conflict (cosine below -0.4)."""
    rng = np.random.default_rng(num_tasks)
    jacobian = rng.standard_normal((num_tasks, dim))
    if num_tasks > 1:
        jacobian[0] = -0.8 * jacobian[1] + 0.4 * jacobian[0]
    return jacobian


CONFLICTING = {t: conflicting_jacobian(t) for t in (2, 3, 5)}


def assert_direction(actual, expected, rtol):
    """||actual - expected|| <= rtol ||expected||: scale-free, as d's scale is the method's."""
    assert np.linalg.norm(actual - expected) <= rtol * np.linalg.norm(expected), (actual, expected)


def test_the_fixed_jacobians_conflict():
    for jacobian in CONFLICTING.values():
        gramian = jacobian @ jacobian.T
        assert gramian[0, 1] / np.sqrt(gramian[0, 0] * gramian[1, 1]) < -0.4


def test_normalized_gramian_has_trace_t_and_leaves_zero_alone():
    gramian = CONFLICTING[3] @ CONFLICTING[3].T
    normalized = normalized_gramian(7.0 * gramian, NUMPY_OPS)
    assert np.trace(normalized) == pytest.approx(3.0, rel=1e-14)
    np.testing.assert_allclose(normalized, normalized_gramian(gramian, NUMPY_OPS), rtol=1e-14)
    np.testing.assert_array_equal(normalized_gramian(np.zeros((2, 2)), NUMPY_OPS), np.zeros((2, 2)))


# -- PCGrad ------------------------------------------------------------------------------------------------
def pcgrad_reference(jacobian, order, project_onto_projected=False):
    """Yu et al. 2020, Algorithm 1, on vectors: g_i projected on the normal plane of each conflicting g_j.

    ``project_onto_projected``: the bug of projecting onto the already-projected g_j (negative control).
    """
    projected = jacobian.copy()
    for i in range(len(jacobian)):
        for j in order[i]:
            other = projected[j] if project_onto_projected else jacobian[j]
            dot = projected[i] @ other
            if dot < 0 and other @ other > 0:
                projected[i] = projected[i] - dot / (other @ other) * other
    return projected.sum(axis=0)


def test_pcgrad_on_two_conflicting_gradients_is_the_papers_projection():
    # g1 = (1, 0), g2 = (-1, 1): g1.g2 = -1 < 0, so g1 -> g1 - (-1/2) g2 = (0.5, 0.5) and
    # g2 -> g2 - (-1/1) g1 = (0, 1); d = (0.5, 1.5).
    d, _, residual = aggregate(PCGrad(), np.array([[1.0, 0.0], [-1.0, 1.0]]))
    np.testing.assert_allclose(d, [0.5, 1.5], rtol=1e-14)
    assert residual == 0.0


def test_pcgrad_leaves_gradients_without_conflict_alone():
    jacobian = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])  # pairwise dots >= 0
    d, w, _ = aggregate(PCGrad(), jacobian)
    np.testing.assert_allclose(w, np.ones(3), rtol=1e-14)
    np.testing.assert_allclose(d, jacobian.sum(axis=0), rtol=1e-14)


@pytest.mark.parametrize("num_tasks", [3, 5])
@pytest.mark.parametrize("key", [(0,), (1, 7), (3, 2)])
def test_pcgrad_matches_algorithm_1_in_the_given_order(num_tasks, key):
    jacobian, aggregator = CONFLICTING[num_tasks], PCGrad(seed=5)
    order = aggregator.order(key, num_tasks)
    d, _, _ = aggregate(aggregator, jacobian, order)
    assert_direction(d, pcgrad_reference(jacobian, order), 1e-12)


def test_pcgrad_projecting_onto_projected_gradients_fails_the_same_check():
    jacobian, aggregator = CONFLICTING[5], PCGrad(seed=5)
    order = aggregator.order((0,), 5)
    d, _, _ = aggregate(aggregator, jacobian, order)
    with pytest.raises(AssertionError):
        assert_direction(d, pcgrad_reference(jacobian, order, project_onto_projected=True), 1e-12)


def test_pcgrad_skips_a_zero_gradient_without_nan():
    jacobian = np.array([[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]])
    d, w, residual = aggregate(PCGrad(), jacobian)
    assert np.all(np.isfinite(w)) and residual == 0.0
    np.testing.assert_allclose(d, [0.5, 1.5], rtol=1e-14)  # as without the zero row


def test_pcgrad_relabelled_tasks_with_the_relabelled_order_give_the_same_direction():
    jacobian, aggregator = CONFLICTING[5], PCGrad()
    order = aggregator.order((4,), 5)
    perm = np.array([3, 0, 4, 1, 2])  # new task k is old task perm[k]
    inverse = np.argsort(perm)
    relabelled = np.stack([[inverse[j] for j in order[perm[k]]] for k in range(5)]).astype(np.int32)
    d, _, _ = aggregate(aggregator, jacobian, order)
    d_perm, _, _ = aggregate(aggregator, jacobian[perm], relabelled)
    assert_direction(d_perm, d, 1e-12)
    with pytest.raises(AssertionError):  # control: the old order on the new labels is another PCGrad draw
        assert_direction(aggregate(aggregator, jacobian[perm], order)[0], d, 1e-12)


def test_pcgrad_order_is_a_reproducible_draw_of_permutations():
    order = pcgrad_order(3, (2, 9), 6)
    assert order.dtype == np.int32 and order.shape == (6, 5)
    check_order(order, 6)
    np.testing.assert_array_equal(order, PCGrad(seed=3).order((2, 9), 6))
    assert not np.array_equal(order, pcgrad_order(3, (2, 10), 6))
    assert not np.array_equal(order, pcgrad_order(4, (2, 9), 6))
    assert pcgrad_order(0, (), 1).shape == (1, 0)


def test_pcgrad_without_an_order_uses_key_0():
    jacobian = CONFLICTING[5]
    np.testing.assert_array_equal(aggregate(PCGrad(), jacobian)[1], aggregate(PCGrad(), jacobian, PCGrad().order((0,), 5))[1])


@pytest.mark.parametrize(
    "order, error, pattern",
    [
        (np.array([[1, 2], [0, 2], [0, 0]]), ValueError, r"row 2 .* permutation of the tasks other than 2, got \[0, 0\]"),
        (np.array([[1, 2], [0, 2]]), ValueError, r"shape \(3, 2\), got \(2, 2\)"),
        (np.array([[1.0, 2.0], [0.0, 2.0], [0.0, 1.0]]), TypeError, r"integers, got dtype float64"),
    ],
)
def test_check_order_names_the_bad_order(order, error, pattern):
    with pytest.raises(error, match=pattern):
        check_order(order, 3)


def test_only_pcgrad_takes_an_order_and_it_must_have_the_right_shape():
    gramian = CONFLICTING[3] @ CONFLICTING[3].T
    with pytest.raises(ValueError, match="mgda takes no task order"):
        MGDA().weights(gramian, NUMPY_OPS, np.zeros((3, 2), np.int32))
    with pytest.raises(ValueError, match=r"shape \(3, 2\), got \(3, 3\)"):
        PCGrad().weights(gramian, NUMPY_OPS, np.zeros((3, 3), np.int32))
    assert MGDA().order((1,), 3) is None


@pytest.mark.parametrize("key", [(-1,), [0], (1.5,), (True,)])
def test_pcgrad_order_rejects_a_bad_key(key):
    with pytest.raises(ValueError, match="key must be a tuple of ints >= 0"):
        pcgrad_order(0, key, 3)


# -- CAGrad ------------------------------------------------------------------------------------------------
def cagrad_reference(jacobian, c):
    """Liu et al. 2021, Algorithm 1, with scipy's SLSQP on the simplex: d = g0 + c‖g0‖ g_w/‖g_w‖."""
    t = len(jacobian)
    g0 = jacobian.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    objective = lambda w: (w @ jacobian) @ g0 + radius * np.linalg.norm(w @ jacobian)  # noqa: E731
    simplex = [{"type": "eq", "fun": lambda w: w.sum() - 1.0}]
    w = minimize(objective, np.full(t, 1.0 / t), bounds=[(0, 1)] * t, constraints=simplex, **SLSQP).x
    g_w = w @ jacobian
    return g0 + radius / np.linalg.norm(g_w) * g_w


def cagrad_primal_value(jacobian, c):
    """max over ‖d - g0‖ <= c‖g0‖ of min_i g_iᵀd (the problem CAGrad's dual solves), by SLSQP on (d, t)."""
    g0 = jacobian.mean(axis=0)
    radius = c * np.linalg.norm(g0)
    constraints = [{"type": "ineq", "fun": lambda z, g=g: g @ z[:-1] - z[-1]} for g in jacobian]
    constraints.append({"type": "ineq", "fun": lambda z: radius**2 - np.sum((z[:-1] - g0) ** 2)})
    result = minimize(lambda z: -z[-1], np.r_[g0, np.min(jacobian @ g0)], constraints=constraints, **SLSQP)
    assert result.success, result.message
    return -result.fun


def assert_cagrad_solves_its_primal(d, jacobian, c):
    """d lies in the ball ‖d - g0‖ <= c‖g0‖ and attains the largest worst-task improvement there."""
    g0 = jacobian.mean(axis=0)
    assert np.linalg.norm(d - g0) <= c * np.linalg.norm(g0) * (1 + 1e-9)
    assert np.min(jacobian @ d) >= cagrad_primal_value(jacobian, c) - 1e-6 * np.linalg.norm(g0) ** 2


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
@pytest.mark.parametrize("c", [0.2, 0.4, 0.8])
def test_cagrad_matches_an_slsqp_solution_of_its_sub_problem(num_tasks, c):
    jacobian = CONFLICTING[num_tasks]
    reference = cagrad_reference(jacobian, c)
    assert_direction(aggregate(CAGrad(c, smoothing=1e-12), jacobian)[0], reference, 1e-6)
    assert_direction(aggregate(CAGrad(c), jacobian)[0], reference, 1e-3)  # the default smoothing's bias


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_cagrad_maximises_the_worst_improvement_in_its_ball(num_tasks):
    jacobian = CONFLICTING[num_tasks]
    assert_cagrad_solves_its_primal(aggregate(CAGrad(0.4, smoothing=1e-12), jacobian)[0], jacobian, 0.4)


def test_cagrad_with_the_official_rescaling_fails_the_same_check():
    jacobian = CONFLICTING[3]
    d = aggregate(CAGrad(0.4, smoothing=1e-12), jacobian)[0]
    with pytest.raises(AssertionError):
        assert_cagrad_solves_its_primal(d / (1 + 0.4**2), jacobian, 0.4)


def test_cagrad_on_orthogonal_unit_gradients_goes_1_plus_c_along_the_mean():
    # g0 = (e1 + e2)/2; by symmetry w = (1/2, 1/2), g_w = g0, so d = g0 + c‖g0‖ g0/‖g0‖ = (1 + c) g0.
    d, w, residual = aggregate(CAGrad(0.4, smoothing=1e-12), np.eye(2))
    np.testing.assert_allclose(d, [0.7, 0.7], rtol=1e-9)
    assert residual <= 1e-12


def test_cagrad_with_c_0_is_the_mean_and_with_one_task_is_1_plus_c_times_it():
    jacobian = CONFLICTING[5]
    np.testing.assert_allclose(aggregate(CAGrad(0.0), jacobian)[0], jacobian.mean(axis=0), rtol=1e-12)
    # T = 1: Ĝ = 1, so ‖g_w‖ is taken as sqrt(1 + smoothing) and d = (1 + c / sqrt(1 + smoothing)) g.
    np.testing.assert_allclose(aggregate(CAGrad(0.5), jacobian[:1])[0], (1 + 0.5 / math.sqrt(1 + 1e-4)) * jacobian[0], rtol=1e-12)


def test_cagrad_of_gradients_that_cancel_is_zero_and_0_over_0_is_guarded():
    # g0 = 0: d = 0. g_w* = 0 for g1 = -g2, g3 ⊥ g1 (w = (1/2, 1/2, 0)): the extra term must not be NaN.
    np.testing.assert_allclose(aggregate(CAGrad(), np.array([[1.0, 2.0], [-1.0, -2.0]]))[0], [0.0, 0.0], atol=1e-15)
    d, w, residual = aggregate(CAGrad(), np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]]))
    assert np.all(np.isfinite(w)) and residual <= CAGrad().tol
    np.testing.assert_allclose(d, [0.0, 1.0 / 3.0], atol=1e-3)  # d -> g0 as the smoothing fades the term


# -- MGDA --------------------------------------------------------------------------------------------------
def mgda_two_task_weight(g1, g2):
    """The closed form for T = 2: w1 = clip((g2 - g1)ᵀg2 / ‖g1 - g2‖², 0, 1) (Sener & Koltun, Algorithm 1)."""
    return float(np.clip((g2 - g1) @ g2 / np.sum((g1 - g2) ** 2), 0.0, 1.0))


def min_norm_reference(jacobian):
    """argmin over the simplex of ‖wᵀJ‖², by scipy's SLSQP."""
    t = len(jacobian)
    simplex = [{"type": "eq", "fun": lambda w: w.sum() - 1.0}]
    w = minimize(lambda w: np.sum((w @ jacobian) ** 2), np.full(t, 1.0 / t), bounds=[(0, 1)] * t, constraints=simplex, **SLSQP).x
    return w @ jacobian


def assert_min_norm_optimality(d, jacobian):
    """The min-norm point d of the hull satisfies g_iᵀd >= ‖d‖² for every i (equality where w_i > 0),
    up to the ridge: min wᵀ(Ĝ + ρI)w moves g_iᵀd - ‖d‖² by at most ρ (tr G / T)."""
    slack = 2 * RIDGE * np.sum(jacobian**2) / len(jacobian)
    assert np.all(jacobian @ d >= d @ d - slack), (jacobian @ d, d @ d)


@pytest.mark.parametrize("seed", range(5))
def test_mgda_with_two_tasks_is_the_closed_form(seed):
    jacobian = np.random.default_rng(seed).standard_normal((2, 4))
    w1 = mgda_two_task_weight(*jacobian)
    d, w, _ = aggregate(MGDA(), jacobian)
    np.testing.assert_allclose(w, [w1, 1 - w1], atol=1e-6)  # the ridge moves w by O(1e-6)
    assert_direction(d, w1 * jacobian[0] + (1 - w1) * jacobian[1], 1e-5)


def test_mgda_by_hand():
    # e1 and 2 e2: w1 = (g2 - g1).g2 / ‖g1 - g2‖² = 4/5, d = (0.8, 0.4). Opposite gradients: d = 0.
    np.testing.assert_allclose(aggregate(MGDA(), np.array([[1.0, 0.0], [0.0, 2.0]]))[0], [0.8, 0.4], rtol=1e-5)
    np.testing.assert_allclose(aggregate(MGDA(), np.array([[1.0, 2.0], [-1.0, -2.0]]))[0], [0.0, 0.0], atol=1e-6)


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_mgda_is_the_min_norm_point_of_the_hull(num_tasks):
    jacobian = CONFLICTING[num_tasks]
    d, w, residual = aggregate(MGDA(), jacobian)
    assert_direction(d, min_norm_reference(jacobian), 1e-5)
    assert_min_norm_optimality(d, jacobian)
    assert residual <= MGDA().tol and np.all(w >= 0) and w.sum() == pytest.approx(1.0, abs=1e-12)


def test_mgda_returning_its_start_unsolved_fails_the_same_check():
    jacobian = CONFLICTING[5]
    with pytest.raises(AssertionError):
        assert_min_norm_optimality(np.full(5, 0.2) @ jacobian, jacobian)


def test_mgda_ub_computes_the_same_weights():
    gramian = CONFLICTING[5] @ CONFLICTING[5].T
    np.testing.assert_array_equal(MGDA().weights(gramian, NUMPY_OPS)[0], AGGREGATORS["mgda_ub"].weights(gramian, NUMPY_OPS)[0])
    assert AGGREGATORS["mgda_ub"].representation


# -- IMTL-G ------------------------------------------------------------------------------------------------
def imtlg_paper_weights(jacobian):
    """Liu et al. 2021's closed form: α_{2:T} = g_1 Uᵀ(D Uᵀ)⁻¹ with D, U the differences g_1 - g_t, u_1 - u_t."""
    units = jacobian / np.linalg.norm(jacobian, axis=1, keepdims=True)
    differences, unit_differences = jacobian[0] - jacobian[1:], units[0] - units[1:]
    rest = jacobian[0] @ unit_differences.T @ np.linalg.inv(differences @ unit_differences.T)
    return np.r_[1.0 - rest.sum(), rest]


def assert_impartial(d, jacobian):
    """d has the same projection on every unit gradient."""
    projections = jacobian @ d / np.linalg.norm(jacobian, axis=1)
    np.testing.assert_allclose(projections, projections.mean(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_imtlg_is_the_papers_closed_form_and_is_impartial(num_tasks):
    jacobian = CONFLICTING[num_tasks]
    d, w, residual = aggregate(IMTLG(), jacobian)
    np.testing.assert_allclose(w, imtlg_paper_weights(jacobian), rtol=1e-10)
    assert w.sum() == pytest.approx(1.0, rel=1e-12) and residual <= IMTLG().tol
    assert_impartial(d, jacobian)


def test_imtlg_with_equal_projections_on_the_raw_gradients_fails_the_same_check():
    jacobian = CONFLICTING[3]  # the variant: Gα = ν1, Σα = 1 (projections on g_i, not on u_i)
    solved = np.linalg.solve(jacobian @ jacobian.T, np.ones(3))
    with pytest.raises(AssertionError):
        assert_impartial(solved / solved.sum() @ jacobian, jacobian)


def test_imtlg_weighs_orthogonal_gradients_by_their_inverse_norms():
    # u_i . d = α_i ‖g_i‖ must be equal: α ∝ 1/‖g_i‖ = (1, 1/2, 1/4) / (7/4).
    jacobian = np.diag([1.0, 2.0, 4.0])
    np.testing.assert_allclose(aggregate(IMTLG(), jacobian)[1], np.array([4.0, 2.0, 1.0]) / 7.0, rtol=1e-12)


def test_imtlg_gives_a_zero_gradient_weight_0_and_stays_impartial_among_the_others():
    jacobian = np.vstack([CONFLICTING[3][:2], np.zeros(6), CONFLICTING[3][2:]])
    d, w, residual = aggregate(IMTLG(), jacobian)
    assert w[2] == 0.0 and residual <= IMTLG().tol
    assert_impartial(d, np.delete(jacobian, 2, axis=0))
    np.testing.assert_array_equal(aggregate(IMTLG(), np.zeros((3, 4)))[0], np.zeros(4))


@pytest.mark.parametrize(
    "jacobian",
    [
        np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0], [0.0, 1.0, 1.0]]),  # g_2 = 2 g_1: d is not determined
        np.array([[1.0], [2.0]]),  # one parameter: both gradients share a direction
        np.random.default_rng(0).standard_normal((5, 3)),  # T = P + 2: the system is singular
    ],
)
def test_imtlg_reports_an_undetermined_direction_through_its_residual(jacobian):
    _, _, residual = aggregate(IMTLG(), jacobian)
    assert not residual <= IMTLG().tol


# -- Nash-MTL ----------------------------------------------------------------------------------------------
def nash_reference(jacobian, normalized=True):
    """α > 0 with Ĝα = 1/α by scipy's fsolve from α_i = 1/sqrt(Ĝ_ii), Ĝ = G / (tr G / T) (or G itself)."""
    gramian = jacobian @ jacobian.T
    if normalized:
        gramian = gramian / (np.trace(gramian) / len(gramian))
    alpha = fsolve(lambda a: gramian @ a - 1.0 / a, 1.0 / np.sqrt(np.diag(gramian)), xtol=1e-12)
    assert np.all(alpha > 0) and np.allclose(alpha * (gramian @ alpha), 1.0, rtol=1e-10)
    return alpha


def assert_bargaining_solution(w, jacobian):
    """α_i (g_iᵀd) is the same positive number for every task (the Nash bargaining condition, any scale)."""
    products = w * (jacobian @ (w @ jacobian))
    assert np.all(products > 0)
    np.testing.assert_allclose(products, products.mean(), rtol=1e-6)


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_nash_mtl_solves_the_bargaining_equations(num_tasks):
    jacobian = CONFLICTING[num_tasks]
    d, w, residual = aggregate(NashMTL(), jacobian)
    np.testing.assert_allclose(w, nash_reference(jacobian), rtol=1e-8)
    assert residual <= 1e-8  # Newton ends one quadratic step below tol
    assert_bargaining_solution(w, jacobian)
    assert np.all(jacobian @ d > 0)  # every task improves


def test_nash_mtl_falling_back_to_equal_weights_fails_the_same_check():
    with pytest.raises(AssertionError):
        assert_bargaining_solution(np.ones(3), CONFLICTING[3])


def test_nash_mtl_on_orthogonal_gradients_weighs_by_inverse_norms():
    # Ĝ = diag(s_i): s_i α_i = 1/α_i gives α_i = 1/sqrt(s_i), the starting point itself.
    jacobian = np.diag([1.0, 3.0])
    _, w, _ = aggregate(NashMTL(), jacobian)
    scale = np.trace(jacobian @ jacobian.T) / 2
    np.testing.assert_allclose(w, 1.0 / np.sqrt(np.array([1.0, 9.0]) / scale), rtol=1e-12)


@pytest.mark.parametrize(
    "jacobian",
    [
        np.array([[1.0, 2.0], [-1.0, -2.0]]),  # exactly opposite: no α > 0 solves Ĝα = 1/α
        np.array([[1.0, 2.0], [-3.0, -6.0]]),  # opposite, other norms
        np.array([[1.0, 2.0], [0.0, 0.0]]),  # a zero gradient: (Ĝα)_2 = 0 = 1/α_2 has no solution
    ],
)
def test_nash_mtl_reports_that_no_solution_exists_instead_of_pretending(jacobian):
    _, w, residual = aggregate(NashMTL(), jacobian)
    assert residual > NashMTL().tol and not NashMTL().converged(residual)
    assert np.all(np.isfinite(w))


# -- UPGrad ------------------------------------------------------------------------------------------------
def upgrad_reference(jacobian):
    """(1/T) Σ_i of g_i projected onto the dual cone {x: Jx >= 0}, by scipy's SLSQP in parameter space."""
    cone = [{"type": "ineq", "fun": lambda x: jacobian @ x}]
    projections = [minimize(lambda x, g=g: np.sum((x - g) ** 2), g, constraints=cone, **SLSQP).x for g in jacobian]
    return np.mean(projections, axis=0)


def dualproj(jacobian):
    """The mean gradient projected onto the dual cone (DualProj: not UPGrad), the negative control."""
    cone = [{"type": "ineq", "fun": lambda x: jacobian @ x}]
    g = jacobian.mean(axis=0)
    return minimize(lambda x: np.sum((x - g) ** 2), g, constraints=cone, **SLSQP).x


@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_upgrad_averages_the_projections_onto_the_dual_cone(num_tasks):
    jacobian = CONFLICTING[num_tasks]
    d, _, residual = aggregate(UPGrad(), jacobian)
    assert_direction(d, upgrad_reference(jacobian), 1e-5)
    assert residual <= UPGrad().tol
    assert np.all(jacobian @ d >= -1e-6 * np.sum(jacobian**2))  # no task gets worse


def test_upgrad_replaced_by_dualproj_fails_the_same_check():
    jacobian = CONFLICTING[3]
    with pytest.raises(AssertionError):
        assert_direction(dualproj(jacobian), upgrad_reference(jacobian), 1e-5)


def test_upgrad_by_hand():
    # g1 = (1, 0), g2 = (-1, 1): π(g1) = g1 - (g1.g2/‖g2‖²) g2 = (0.5, 0.5) (then g1.π = 0.5 >= 0),
    # π(g2) = g2 - (g1.g2/‖g1‖²) g1 = (0, 1); d = mean = (0.25, 0.75). Without conflict d = the mean.
    np.testing.assert_allclose(aggregate(UPGrad(), np.array([[1.0, 0.0], [-1.0, 1.0]]))[0], [0.25, 0.75], rtol=1e-5)
    acute = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0]])
    np.testing.assert_allclose(aggregate(UPGrad(), acute)[0], acute.mean(axis=0), rtol=1e-14)


# -- every method ------------------------------------------------------------------------------------------
NAMES = sorted(AGGREGATORS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("k", [1e-3, 7.0, 1e4])
def test_every_method_is_scale_equivariant(name, k):
    jacobian = CONFLICTING[5]
    assert_direction(aggregate(AGGREGATORS[name], k * jacobian)[0], k * aggregate(AGGREGATORS[name], jacobian)[0], 1e-9)


def test_nash_mtl_solved_for_the_raw_gramian_fails_the_same_check():
    # The paper's α for G itself: scaling J by k scales α by 1/k, so d does not scale.
    def raw_nash(jacobian):
        return nash_reference(jacobian, normalized=False) @ jacobian

    jacobian = CONFLICTING[3]
    with pytest.raises(AssertionError):
        assert_direction(raw_nash(7.0 * jacobian), 7.0 * raw_nash(jacobian), 1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if n != "pcgrad"])
def test_every_method_but_pcgrad_ignores_the_order_of_the_tasks(name):
    jacobian, perm = CONFLICTING[5], np.array([2, 4, 0, 3, 1])
    assert_direction(aggregate(AGGREGATORS[name], jacobian[perm])[0], aggregate(AGGREGATORS[name], jacobian)[0], 1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_one_task_keeps_its_gradient(name):
    g = np.array([[3.0, -1.0, 2.0]])
    expected = (1 + 0.4 / math.sqrt(1 + 1e-4)) * g[0] if name == "cagrad" else g[0]  # see the CAGrad test
    d, _, residual = aggregate(AGGREGATORS[name], g)
    np.testing.assert_allclose(d, expected, rtol=1e-12)
    assert AGGREGATORS[name].converged(residual)


@pytest.mark.parametrize("name", NAMES)
def test_a_zero_jacobian_gives_a_zero_direction(name):
    d, w, residual = aggregate(AGGREGATORS[name], np.zeros((3, 4)))
    np.testing.assert_array_equal(d, np.zeros(4))
    assert np.all(np.isfinite(w))
    assert AGGREGATORS[name].converged(residual) == (name != "nash_mtl")  # Nash-MTL: no α solves 0 = 1/α


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # numpy's inf / inf
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_gramian_gives_a_nan_residual(name, bad):
    gramian = CONFLICTING[3] @ CONFLICTING[3].T
    gramian[1, 1] = bad
    _, residual = AGGREGATORS[name].weights(gramian, NUMPY_OPS)
    assert math.isnan(float(residual)) and not AGGREGATORS[name].converged(residual)


# -- configuration ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, error, pattern",
    [
        (lambda: PCGrad(seed=-1), ValueError, r"PCGrad\.seed must be an int >= 0, got -1"),
        (lambda: PCGrad(seed=1.5), ValueError, r"PCGrad\.seed must be an int >= 0, got 1\.5"),
        (lambda: PCGrad(seed=True), ValueError, r"PCGrad\.seed must be an int >= 0, got True"),
        (lambda: CAGrad(c=1.0), ValueError, r"CAGrad\.c must be a number in \[0, 1\), got 1\.0"),
        (lambda: CAGrad(c=-0.1), ValueError, r"CAGrad\.c must be a number in \[0, 1\), got -0\.1"),
        (lambda: CAGrad(c="0.4"), ValueError, r"CAGrad\.c must be a number in \[0, 1\), got '0\.4'"),
        (lambda: CAGrad(c=math.nan), ValueError, r"CAGrad\.c must be a number in \[0, 1\), got nan"),
        (lambda: CAGrad(smoothing=0.0), ValueError, r"CAGrad\.smoothing must be a finite number > 0, got 0\.0"),
        (lambda: CAGrad(tol=0.0), ValueError, r"CAGrad\.tol must be a finite number > 0, got 0\.0"),
        (lambda: MGDA(max_iter=0), ValueError, r"MGDA\.max_iter must be an int >= 1, got 0"),
        (lambda: MGDA(representation=1), TypeError, r"MGDA\.representation must be a bool, got 1"),
        (lambda: NashMTL(tol=math.inf), ValueError, r"NashMTL\.tol must be a finite number > 0, got inf"),
        (lambda: UPGrad(max_iter=2.0), ValueError, r"UPGrad\.max_iter must be an int >= 1, got 2\.0"),
        (lambda: IMTLG(tol=-1e-3), ValueError, r"IMTLG\.tol must be a finite number > 0, got -0\.001"),
    ],
)
def test_bad_settings_are_refused_with_their_value(build, error, pattern):
    with pytest.raises(error, match=pattern):
        build()


def test_resolve_aggregator_takes_none_a_name_or_an_aggregator():
    assert resolve_aggregator(None) is None
    assert resolve_aggregator("mgda_ub") == MGDA(representation=True)
    custom = CAGrad(0.7)
    assert resolve_aggregator(custom) is custom
    for name in AGGREGATORS:
        assert resolve_aggregator(name).name == ("mgda" if name == "mgda_ub" else name)
    for bad in ("adam", 3, CAGrad):
        with pytest.raises(ValueError, match=r"one of \('pcgrad', 'cagrad', 'mgda', 'mgda_ub', 'imtlg', 'nash_mtl', 'upgrad'\)"):
            resolve_aggregator(bad)


@pytest.mark.parametrize("aggregator", [*AGGREGATORS.values(), CAGrad(0.7, tol=1e-6, max_iter=9), PCGrad(seed=4), IMTLG(tol=1e-3)])
def test_describe_is_json_and_round_trips(aggregator):
    config = json.loads(json.dumps(describe(aggregator)))
    assert aggregator_from_config(config) == aggregator
    assert hash(aggregator_from_config(config)) == hash(aggregator)


def test_describe_names_every_field():
    assert describe(CAGrad()) == {"name": "cagrad", "tol": 1e-4, "max_iter": 100, "c": 0.4, "smoothing": 1e-4}
    assert describe(MGDA(representation=True))["representation"] is True


@pytest.mark.parametrize(
    "config, pattern",
    [
        ({"name": "adam"}, r"'name' is one of"),
        ([("name", "mgda")], r"must be a mapping"),
        ({"name": "mgda", "c": 0.4}, r"mgda has no fields \['c'\]; it has \['max_iter', 'representation', 'tol'\]"),
        ({"name": "cagrad", "c": 2.0}, r"CAGrad\.c must be a number in \[0, 1\), got 2\.0"),
    ],
)
def test_aggregator_from_config_refuses_a_bad_config(config, pattern):
    with pytest.raises(ValueError, match=pattern):
        aggregator_from_config(config)


def test_the_aggregation_module_loads_no_deep_learning_framework(helpers):
    assert helpers.frameworks_loaded_by("mtl_core.aggregation") == []
