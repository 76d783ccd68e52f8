"""Property 10: the suite can fail. A changed weight, label or Adam epsilon breaks the assertion that
guards it, through the same helper and tolerances the real tests use."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import jax_impl
import torch_ref
from mtl_core import pad_rows
from parity_tests.backends import jax_batches, jax_logits, jax_losses, jax_module, precision, torch_batches, torch_losses, torch_model
from parity_tests.compare import assert_close_trees, expect_mismatch, relative_difference
from parity_tests.profiles import examples
from parity_tests.runs import run_both
from parity_tests.strategies import Batch, WeightingChoice, problems, trajectory_cases
from parity_tests.tolerances import DTYPES, tolerance

# Adam's epsilon, multiplied: float64 sees a thousandfold change in any draw (a doubling only in most);
# float32 needs epsilon to reach the gradients' size before the change outgrows rounding.
EPSILON_FACTOR = {"float32": 1e8, "float64": 1e3}


@settings(max_examples=examples(5))
@given(problem=problems(), data=st.data())
def test_one_weight_one_ulp_off_breaks_the_interchange_check(problem, data):
    start = problem.initial_params()
    name = data.draw(st.sampled_from(sorted(start)))
    index = data.draw(st.integers(0, start[name].size - 1))
    changed = {key: value.copy() for key, value in start.items()}
    flat = changed[name].reshape(-1)
    flat[index] = np.nextafter(flat[index], np.float32(np.inf))
    with expect_mismatch():
        assert_close_trees(torch_ref.export_params(torch_model(problem, changed)), start, tolerance("interchange"))


@settings(max_examples=examples(5))
@given(problem=problems(), data=st.data())
def test_one_head_bias_off_by_ten_tolerances_breaks_the_forward_check(problem, data):
    forward = tolerance("forward")
    task = data.draw(st.sampled_from(problem.names))
    batch = problem.batches(tasks=(task,))[task]
    start = problem.initial_params()
    with torch.no_grad():
        expected = torch_model(problem, start)(batch.csr(), task_id=task).numpy()
    # one output's bias moves every row's logit by delta: ||change||_2 = delta * sqrt(rows) = 10 rtol ||logits||
    delta = 10 * forward.rtol * max(np.linalg.norm(expected), forward.floor) / np.sqrt(len(expected))
    changed = {key: value.copy() for key, value in start.items()}
    changed[f"heads.{task}.bias"][data.draw(st.integers(0, expected.shape[1] - 1))] += delta
    module = jax_module(problem)
    (logits,) = jax_logits(module, jax_impl.import_params(changed, module), [(task, pad_rows(batch.csr()))])
    with expect_mismatch():
        assert_close_trees({task: logits}, {task: expected}, forward)


def most_telling_label_change(kind: str, logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A copy of ``y`` with the one label whose change moves the loss most."""
    y = y.copy()
    if kind == "multiclass":  # the row with the widest logit spread takes its least likely class
        row = int(np.argmax(logits.max(axis=1) - logits.min(axis=1)))
        y[row] = int(np.argmin(logits[row])) if y[row] != np.argmin(logits[row]) else int(np.argmax(logits[row]))
    elif kind == "regression":  # the largest residual, doubled and one more
        row, col = np.unravel_index(np.argmax(np.abs(logits - y)), y.shape)
        y[row, col] -= np.sign(logits[row, col] - y[row, col]) * (1 + abs(logits[row, col] - y[row, col]))
    else:  # binary and multilabel: the most confident logit's label flipped
        row, col = np.unravel_index(np.argmax(np.abs(logits)), y.shape)
        y[row, col] = 1.0 - y[row, col]
    return y


@settings(max_examples=examples(5))
@given(problem=problems(masked=False), data=st.data())
def test_one_changed_label_breaks_the_loss_check(problem, data):
    losses = tolerance("losses")
    task = data.draw(st.sampled_from(problem.names))
    batch = problem.batches(tasks=(task,))[task]
    model = torch_model(problem, problem.initial_params())
    with torch.no_grad():
        logits = model(batch.x, task_id=task).numpy()
        expected = torch_losses(model, torch_batches(problem, {task: batch}))[1]
        changed = Batch(batch.x, most_telling_label_change(problem.tasks[problem.names.index(task)].kind, logits, batch.y), None)
        # a label change must move the loss by more than the tolerance to be visible at all
        moved = torch_losses(model, torch_batches(problem, {task: changed}))[1]
    assume(relative_difference(moved[task], expected[task], losses.floor) > 2 * losses.rtol)
    module = jax_module(problem)
    _, actual = jax_losses(module, jax_impl.import_params(problem.initial_params(), module), jax_batches(problem, {task: changed}))
    with expect_mismatch():
        assert_close_trees(actual, expected, losses)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(2))
@given(data=st.data())
def test_a_changed_adam_epsilon_breaks_the_trajectory_check(dtype, data):
    case = data.draw(trajectory_cases(dtype, ("sum",), max_steps=3))
    adam = replace(case.adam, lr=1e-3)  # the recipe's lr: a smaller one hides any epsilon in float32
    changed = replace(adam, eps=adam.eps * EPSILON_FACTOR[dtype])
    with precision(dtype):
        torch_run, jax_run = run_both(case.stream.problem, case.stream.steps(dtype), adam, WeightingChoice("sum"), dtype, jax_adam=changed)
    with expect_mismatch():
        assert_close_trees(jax_run.tree(), torch_run.tree(), tolerance("trajectory", dtype))
