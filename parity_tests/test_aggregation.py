"""Gradient aggregation: torch_ref and jax_impl turn the same Jacobian into the same direction.

Every method of mtl_core.aggregation (mgda_ub is mgda's computation), on drawn Jacobians (1-6 tasks, 1-50 parameters; rows random,
parallel, opposite, conflicting or zero; scales 1e-6..1e6), and on fixed conflicting ones (T = 2, 3, 5).
Directions are compared in units of the Jacobian's RMS row norm, held to "aggregation" when the
Gramian's condition number is at most WELL_CONDITIONED and to "aggregation_ill_conditioned" beyond. Where a solver reports non-convergence (residual > tol, or NaN) in either
backend, both must report it, and the directions, which are then not determined, are not compared;
unless both residuals lie within a factor BORDERLINE of tol, where float32 rounding of the residual
itself decides (seen: Nash-MTL at 1.4e-4 vs 3.5e-5, for tol 1e-4, in 7 draws of 2500).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jax_impl.aggregate import aggregate as jax_aggregate
from jax_impl.aggregate import gramian_weights as jax_gramian_weights
from torch_ref.aggregate import aggregate as torch_aggregate
from torch_ref.aggregate import gramian_weights as torch_gramian_weights
from mtl_core.aggregation import AGGREGATORS
from parity_tests.backends import TEST_JIT_OPTIONS, precision
from parity_tests.compare import assert_close_trees, expect_mismatch
from parity_tests.profiles import examples
from parity_tests.strategies import jacobian_cases
from parity_tests.tolerances import DTYPES, WELL_CONDITIONED, tolerance

NAMES = sorted(set(AGGREGATORS) - {"mgda_ub"})
BORDERLINE = 10.0
jitted_aggregate = jax.jit(jax_aggregate, static_argnames="aggregator", compiler_options=TEST_JIT_OPTIONS)
jitted_weights = jax.jit(jax_gramian_weights, static_argnames="aggregator", compiler_options=TEST_JIT_OPTIONS)


def rms_row_norm(rows: np.ndarray) -> float:
    """sqrt(tr G / T), the unit directions are compared in (1 for an all-zero Jacobian)."""
    return float(np.sqrt(np.sum(rows.astype(np.float64) ** 2) / len(rows))) or 1.0


def condition_number(rows: np.ndarray) -> float:
    """cond(G) of the float64 Gramian (inf when the rows are dependent)."""
    eigenvalues = np.linalg.eigvalsh(rows.astype(np.float64) @ rows.astype(np.float64).T)
    return float(eigenvalues[-1] / eigenvalues[0]) if eigenvalues[0] > 0 else np.inf


def agreement(rows: np.ndarray, dtype) -> object:
    """The tolerance the directions of ``rows`` are held to."""
    return tolerance("aggregation" if condition_number(rows) <= WELL_CONDITIONED else "aggregation_ill_conditioned", dtype)


def torch_result(rows: np.ndarray, aggregator) -> tuple[np.ndarray, float]:
    """(direction (P,), residual) of torch_ref on ``rows`` (T, P)."""
    jacobian = torch.as_tensor(rows)
    _, residual = torch_gramian_weights(jacobian @ jacobian.T, aggregator)
    return torch_aggregate(jacobian, aggregator).numpy(), float(residual)


def jax_result(rows: np.ndarray, aggregator) -> tuple[np.ndarray, float]:
    """(direction (P,), residual) of jax_impl on ``rows`` (T, P), both jitted."""
    jacobian = jnp.asarray(rows)
    _, residual = jitted_weights(jnp.matmul(jacobian, jacobian.T, precision="highest"), aggregator)
    return np.asarray(jitted_aggregate(jacobian, aggregator)), float(residual)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=examples(6))
@given(case=jacobian_cases())
def test_both_backends_aggregate_to_the_same_direction_or_both_report_failure(name, dtype, case):
    aggregator, rows = AGGREGATORS[name], case.array().astype(dtype)
    with precision(dtype):
        torch_direction, torch_residual = torch_result(rows, aggregator)
        jax_direction, jax_residual = jax_result(rows, aggregator)
    converged = (aggregator.converged(torch_residual), aggregator.converged(jax_residual))
    borderline = all(aggregator.tol / BORDERLINE <= r <= aggregator.tol * BORDERLINE for r in (torch_residual, jax_residual))
    verdicts = f"{name}: torch residual {torch_residual:.3g}, jax {jax_residual:.3g}, tol {aggregator.tol:g}"
    assert converged[0] == converged[1] or borderline, verdicts
    if all(converged):
        scale = rms_row_norm(rows)
        assert_close_trees({"direction": jax_direction / scale}, {"direction": torch_direction / scale}, agreement(rows, dtype), name)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_fixed_conflicting_jacobians_aggregate_alike_within_1e_4(name, num_tasks):
    rng = np.random.default_rng([7, num_tasks])
    rows = rng.standard_normal((num_tasks, 40))
    rows[1:] -= 0.9 * rows[0]  # every later gradient conflicts with the first (cosine < 0)
    rows = rows.astype(np.float32)
    assert np.all(rows[1:] @ rows[0] < 0) and condition_number(rows) <= WELL_CONDITIONED
    torch_direction, _ = torch_result(rows, AGGREGATORS[name])
    jax_direction, _ = jax_result(rows, AGGREGATORS[name])
    scale, tol = rms_row_norm(rows), tolerance("aggregation", "float32")
    assert tol.rtol <= 1e-4
    assert_close_trees({"direction": jax_direction / scale}, {"direction": torch_direction / scale}, tol, f"{name}, T = {num_tasks}")


@settings(max_examples=examples(5))
@given(case=jacobian_cases(), data=st.data())
def test_one_weight_off_by_ten_tolerances_breaks_the_aggregation_check(case, data):
    rows = case.array()
    norms = np.linalg.norm(rows.astype(np.float64), axis=1)
    assume(np.any(norms > 0))
    aggregator = AGGREGATORS[data.draw(st.sampled_from(NAMES))]
    task = data.draw(st.sampled_from(np.flatnonzero(norms > 0).tolist()))
    jacobian = torch.as_tensor(rows, dtype=torch.float64)
    weights, _ = torch_gramian_weights(jacobian @ jacobian.T, aggregator)
    expected, scale, agreement = (weights @ jacobian).numpy(), rms_row_norm(rows), tolerance("aggregation", "float32")
    # weight `task` moves d by delta * ‖g_task‖ = 10 rtol * max(‖d‖, floor), in units of the RMS row norm
    delta = 10 * agreement.rtol * max(np.linalg.norm(expected) / scale, agreement.floor) * scale / norms[task]
    changed = expected + delta * rows[task].astype(np.float64)
    with expect_mismatch():
        assert_close_trees({"direction": changed / scale}, {"direction": expected / scale}, agreement)
