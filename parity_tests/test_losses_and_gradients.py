"""Properties 3 and 4: every task's loss, the summed loss and every parameter's gradient agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import jax_impl
from mtl_core import TaskSpec
from parity_tests.backends import (
    jax_batches,
    jax_canonical,
    jax_gradients,
    jax_losses,
    jax_module,
    precision,
    torch_batches,
    torch_gradients,
    torch_losses,
    torch_model,
)
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.strategies import Problem, problems
from parity_tests.tolerances import DTYPES, tolerance


def backend_inputs(problem, dtype):
    """Both backends on the problem's weights, and step 0's batches as each takes them."""
    params, batches = problem.initial_params(dtype), problem.batches(dtype=dtype)
    model, module = torch_model(problem, params), jax_module(problem)
    return model, torch_batches(problem, batches), module, jax_impl.import_params(params, module), jax_batches(problem, batches)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(5))
@given(problem=problems())
def test_every_task_loss_and_the_summed_loss_agree(problem, dtype):
    with precision(dtype):
        model, torch_in, module, params, jax_in = backend_inputs(problem, dtype)
        torch_total, torch_each = torch_losses(model, torch_in)
        jax_total, jax_each = jax_losses(module, params, jax_in)
    assert_close_trees(
        {"total": jax_total, "tasks": jax_each}, {"total": torch_total, "tasks": torch_each}, tolerance("losses", dtype), "losses"
    )


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(5))
@given(problem=problems())
def test_every_gradient_of_the_summed_loss_agrees(problem, dtype):
    with precision(dtype):
        model, torch_in, module, params, jax_in = backend_inputs(problem, dtype)
        torch_losses(model, torch_in)[0].backward()
        grads = jax_gradients(module, params, jax_in)
    assert_close_trees(jax_canonical(grads), torch_gradients(model), tolerance("gradients", dtype), "gradients of the summed loss")


def test_cross_entropy_agrees_for_large_logits_near_a_tie():
    # One row with logits (1000, 990, 985) and label 0: the loss is log(1 + e^-10 + e^-15) = 4.57e-5.
    # Well conditioned (d loss / d logits ~ 5e-5), so float32 can and must get it to 1e-5 of scale 1.
    problem = Problem((TaskSpec("yelp", "multiclass", 3),), 1, (1,), "relu", (1,), ("large",), (False,), False, seed=0)
    params = {
        "trunk.0.kernel": np.ones((1, 1), np.float32),
        "trunk.0.bias": np.zeros(1, np.float32),
        "heads.yelp.kernel": np.array([[1.0, 0.99, 0.985]], np.float32),
        "heads.yelp.bias": np.zeros(3, np.float32),
    }
    batch = {"yelp": (np.array([[1000.0]], np.float32), np.array([0], np.int32))}
    module = jax_module(problem)
    _, expected = torch_losses(torch_model(problem, params), batch)
    _, actual = jax_losses(module, jax_impl.import_params(params, module), batch)
    assert_close_trees(actual, expected, tolerance("losses"), "cross-entropy of logits (1000, 990, 985)")
