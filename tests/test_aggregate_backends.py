"""torch_ref.aggregate and jax_impl.aggregate: the shared maths, run by each framework, against numpy float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jax_impl.aggregate import aggregate as jax_aggregate
from jax_impl.aggregate import gramian_weights as jax_gramian_weights
from torch_ref.aggregate import aggregate as torch_aggregate
from torch_ref.aggregate import gramian_weights as torch_gramian_weights
from mtl_core.aggregation import AGGREGATORS, CAGrad, NashMTL, PCGrad
from mtl_core.array_ops import NUMPY_OPS

NAMES = sorted(AGGREGATORS)
# Float32 against float64: the Gramian's entries carry relative rounding ~1e-7, and the well-conditioned
# Jacobians below amplify it to < 1e-5 (measured: 9e-7, IMTL-G).
FLOAT32_RTOL = 1e-4
# Float64 torch / jax against numpy: the same algorithm, iterations and stopping rule; only summation orders differ.
FLOAT64_RTOL = 1e-10
jax_weights = jax.jit(jax_gramian_weights, static_argnames="aggregator")  # eager lax loops are slow


def jacobian(num_tasks: int, dim: int = 9, seed: int = 0) -> np.ndarray:
    """A fixed (T, 9) Jacobian whose first two gradients conflict (cosine -0.74 to -0.91)."""
    rng = np.random.default_rng([seed, num_tasks])
    rows = rng.standard_normal((num_tasks, dim))
    if num_tasks > 1:
        rows[0] = -0.8 * rows[1] + 0.5 * rows[0]
    return rows


def reference(aggregator, rows: np.ndarray) -> np.ndarray:
    """The direction (P,) in numpy float64."""
    weights, _ = aggregator.weights(rows @ rows.T, NUMPY_OPS)
    return weights @ rows


def relative_error(actual, expected) -> float:
    return float(np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected))


def torch_direction(rows, aggregator, dtype=torch.float32, order=None):
    return torch_aggregate(torch.as_tensor(rows, dtype=dtype), aggregator, order).numpy()


def jax_direction(rows, aggregator, dtype=jnp.float32, order=None):
    jitted = jax.jit(jax_aggregate, static_argnames="aggregator")
    return np.asarray(jitted(jnp.asarray(rows, dtype), aggregator, order))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("num_tasks", [2, 3, 5])
def test_float32_directions_agree_with_the_float64_reference(name, num_tasks):
    rows = jacobian(num_tasks)
    expected = reference(AGGREGATORS[name], rows)
    assert relative_error(torch_direction(rows, AGGREGATORS[name]), expected) <= FLOAT32_RTOL
    assert relative_error(jax_direction(rows, AGGREGATORS[name]), expected) <= FLOAT32_RTOL


@pytest.mark.parametrize("name", NAMES)
def test_float64_directions_are_the_references_own(name):
    rows = jacobian(5)
    expected = reference(AGGREGATORS[name], rows)
    assert relative_error(torch_direction(rows, AGGREGATORS[name], torch.float64), expected) <= FLOAT64_RTOL
    with jax.enable_x64(True):
        assert relative_error(jax_direction(rows, AGGREGATORS[name], jnp.float64), expected) <= FLOAT64_RTOL


def test_another_pcgrad_order_is_caught_by_the_same_check():
    # Control: the check above tells PCGrad orders apart (else PCGrad's agreement would prove little).
    rows, aggregator = jacobian(5), PCGrad()
    expected = reference(aggregator, rows)
    assert relative_error(torch_direction(rows, aggregator, order=aggregator.order((1,), 5)), expected) > FLOAT32_RTOL


def test_a_given_pcgrad_order_is_used_by_both_backends_also_when_traced():
    rows, aggregator = jacobian(5), PCGrad(seed=2)
    order = aggregator.order((3, 1), 5)
    weights, _ = aggregator.weights(rows @ rows.T, NUMPY_OPS, order)
    expected = weights @ rows
    assert relative_error(torch_direction(rows, aggregator, order=order), expected) <= FLOAT32_RTOL
    assert relative_error(torch_direction(rows, aggregator, order=torch.as_tensor(order)), expected) <= FLOAT32_RTOL
    assert relative_error(jax_direction(rows, aggregator, order=jnp.asarray(order)), expected) <= FLOAT32_RTOL
    assert relative_error(torch_direction(rows, aggregator, order=order.tolist()), expected) <= FLOAT32_RTOL


# jax shares one compilation cache among the jit wrappers of a function: the tests count what a call adds.
@pytest.mark.parametrize("name", NAMES)
def test_jitted_aggregate_does_not_recompile_for_new_values(name):
    jitted = jax.jit(jax_aggregate, static_argnames="aggregator")
    first = jitted(jnp.asarray(jacobian(4, dim=11, seed=1), jnp.float32), AGGREGATORS[name])
    compiled = jitted._cache_size()
    second = jitted(jnp.asarray(jacobian(4, dim=11, seed=2), jnp.float32), AGGREGATORS[name])
    assert jitted._cache_size() == compiled
    assert not np.allclose(first, second)


def test_jitted_gramian_weights_recompiles_only_for_a_new_aggregator():
    jitted = jax.jit(jax_gramian_weights, static_argnames="aggregator")
    rows = jnp.asarray(jacobian(4), jnp.float32)
    jitted(rows @ rows.T, CAGrad(0.3))
    compiled = jitted._cache_size()
    jitted(2.0 * rows @ rows.T, CAGrad(0.3))
    jitted(rows @ rows.T, CAGrad(0.3))  # an equal instance hashes alike
    assert jitted._cache_size() == compiled
    jitted(rows @ rows.T, CAGrad(0.35))
    assert jitted._cache_size() == compiled + 1


def test_weights_are_constants_for_autograd_in_torch():
    rows = torch.tensor(jacobian(3), dtype=torch.float32, requires_grad=True)
    direction = torch_aggregate(rows, "upgrad")
    direction.sum().backward()
    weights, _ = torch_gramian_weights(rows.detach() @ rows.detach().T, "upgrad")
    assert not weights.requires_grad
    np.testing.assert_allclose(rows.grad.numpy(), np.outer(weights.numpy(), np.ones(9)), rtol=1e-6)


def test_weights_are_constants_for_autodiff_in_jax():
    rows = jnp.asarray(jacobian(3), jnp.float32)
    gradient = jax.jit(jax.grad(lambda j: jax_aggregate(j, "mgda").sum()))(rows)  # no reverse-mode through the solver
    weights, _ = jax_weights(rows @ rows.T, "mgda")
    np.testing.assert_allclose(gradient, np.outer(weights, np.ones(9)), rtol=1e-6)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_both_backends_report_that_nash_mtl_has_no_solution_for_opposite_gradients(backend):
    rows = np.array([[1.0, 2.0], [-1.0, -2.0]], np.float32)
    weights_of = torch_gramian_weights if backend == "torch" else jax_weights
    to_array = torch.as_tensor if backend == "torch" else jnp.asarray
    _, residual = weights_of(to_array(rows @ rows.T), NashMTL())
    assert float(residual) > NashMTL().tol


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_both_backends_give_a_nan_residual_for_a_nan_gramian(backend):
    gramian = np.eye(3, dtype=np.float32)
    gramian[0, 2] = gramian[2, 0] = np.nan
    weights_of = torch_gramian_weights if backend == "torch" else jax_weights
    to_array = torch.as_tensor if backend == "torch" else jnp.asarray
    for name in NAMES:
        _, residual = weights_of(to_array(gramian), name)
        assert np.isnan(float(residual)), name


def test_torch_weights_keep_the_gramians_dtype():
    rows = torch.tensor(jacobian(3), dtype=torch.float64)
    weights, residual = torch_gramian_weights(rows @ rows.T, "nash_mtl")
    assert weights.dtype == torch.float64 and residual.dtype == torch.float64 and weights.shape == (3,)


BAD_INPUTS = {
    "one_dimensional": (np.ones(4, np.float32), "mgda", None, ValueError, r"jacobian must have shape \(T, P\) with T >= 1, got \(4,\)"),
    "no_tasks": (np.ones((0, 4), np.float32), "mgda", None, ValueError, r"got \(0, 4\)"),
    "integer": (np.ones((2, 4), np.int32), "mgda", None, TypeError, r"jacobian must be float32 or float64, got dtype int32"),
    "half": (np.ones((2, 4), np.float16), "mgda", None, TypeError, r"got dtype float16"),
    "unknown_name": (np.ones((2, 4), np.float32), "adam", None, ValueError, r"one of \('pcgrad', .*got 'adam'"),
    "no_aggregator": (np.ones((2, 4), np.float32), None, None, ValueError, r"aggregator must be an Aggregator .* got None"),
    "order_for_mgda": (np.ones((2, 4), np.float32), "mgda", np.array([[1], [0]]), ValueError, r"mgda takes no task order"),
    "order_of_wrong_shape": (np.ones((3, 4), np.float32), "pcgrad", np.array([[1], [0]]), ValueError, r"shape \(3, 2\), got \(2, 1\)"),
    "order_not_a_permutation": (np.ones((2, 4), np.float32), "pcgrad", np.array([[0], [0]]), ValueError, r"row 0 .* got \[0\]"),
}


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_its_value(backend, case):
    rows, aggregator, order, error, pattern = BAD_INPUTS[case]
    run = torch_aggregate if backend == "torch" else jax_aggregate
    to_array = torch.as_tensor if backend == "torch" else jnp.asarray
    with pytest.raises(error, match=pattern):
        run(to_array(rows), aggregator, order)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_gramian_must_be_square(backend):
    weights_of = torch_gramian_weights if backend == "torch" else jax_weights
    to_array = torch.as_tensor if backend == "torch" else jnp.asarray
    with pytest.raises(ValueError, match=r"gramian must have shape \(T, T\) with T >= 1, got \(2, 3\)"):
        weights_of(to_array(np.ones((2, 3), np.float32)), "upgrad")


def test_a_float_order_is_refused_by_jax_also_when_traced():
    rows = jnp.asarray(jacobian(3), jnp.float32)
    with pytest.raises(TypeError, match="integers, got dtype float32"):
        jax.jit(jax_aggregate, static_argnames="aggregator")(rows, PCGrad(), jnp.zeros((3, 2)))
