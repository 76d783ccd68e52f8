"""Properties 5 and 6 at the fit level: two whole fits with the same seed agree epoch by epoch.

Each case names a curriculum and a weighting; together the cases cover every curriculum and every
weighting of the library (the step-level tests add every weighting under drawn curricula).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jax_impl.layers import UNBLOCKED_ROWS
from mtl_core import TaskSpec
from mtl_core.tasks import TOTAL
from parity_tests.backends import precision
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.runs import JaxRun, TorchRun, fit_both
from parity_tests.strategies import AdamSettings, FitProblem, Problem, WeightingChoice, fit_problems
from parity_tests.tolerances import DTYPES, tolerance

# Every curriculum and every weighting at least once (all 20 pairs would cost 4x the time).
CASES = [
    ("round_robin", "sum"),
    ("max_size_cycle", "mean"),
    ("sequential", "fixed"),
    ("proportional", "uncertainty"),
    ("round_robin", "dwa"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("curriculum", "weighting"), CASES)
@settings(max_examples=examples(2))
@given(data=st.data())
def test_fit_runs_agree_epoch_by_epoch(curriculum, weighting, dtype, data):
    case = data.draw(fit_problems(dtype, (curriculum,), (weighting,)))
    with precision(dtype):
        torch_side, jax_side = fit_both(case, dtype)
    assert_close_trees(jax_side, torch_side, tolerance("fit", dtype), f"fit, {case.epochs} epochs")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fits_whose_steps_hold_more_rows_than_one_gather_agree(dtype):
    # Over UNBLOCKED_ROWS rows a step, jax gathers sparse rows in blocks on a CPU (jax_impl.layers).
    tasks = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))
    problem = Problem(tasks, 2000, (16,), "sigmoid", (1, 1), ("reviews", "reviews"), (True, True), False, seed=3)
    case = FitProblem(problem, rows=(450, 300), epochs=1, batch_size=150, lr=1e-3, curriculum="round_robin", weighting="sum", grad_norm_every=1)
    assert len(tasks) * case.batch_size > UNBLOCKED_ROWS
    with precision(dtype):
        torch_side, jax_side = fit_both(case, dtype)
    assert_close_trees(jax_side, torch_side, tolerance("fit", dtype), "fit of 300-row steps")


@pytest.mark.parametrize("name", ["total", "loss"])
def test_fit_histories_agree_for_a_task_named_like_a_history_key(name):
    # Task names are any strings: one spelled like a key the backends add to loss dicts must not lose its loss.
    tasks = (TaskSpec(name, "binary", 1), TaskSpec("other", "regression", 2))
    problem = Problem(tasks, 5, (3,), "tanh", (2, 2), ("normal", "normal"), (True, True), False, seed=1)
    case = FitProblem(problem, rows=(6, 6), epochs=2, batch_size=3, lr=1e-3, curriculum="round_robin", weighting="sum", grad_norm_every=1)
    torch_side, jax_side = fit_both(case, "float32")
    assert_close_trees(jax_side, torch_side, tolerance("fit"), f"fit with a task named {name!r}")


def test_both_steps_refuse_a_task_named_total_before_training():
    # make_train_step's report keeps "total" for the combined loss: a task of that name would be hidden.
    tasks = (TaskSpec(TOTAL, "binary", 1), TaskSpec("other", "regression", 2))
    problem = Problem(tasks, 5, (3,), "tanh", (2, 2), ("normal", "normal"), (True, True), False, seed=1)
    adam, sum_ = AdamSettings(), WeightingChoice("sum")
    torch_run, jax_run = TorchRun(problem, adam, sum_, np.float32), JaxRun(problem, adam, sum_, np.float32)
    before = torch_run.outcome([]).tree(), jax_run.outcome([]).tree()
    for run in (torch_run, jax_run):
        with pytest.raises(ValueError, match="task named 'total' collides with the combined loss"):
            run.run([problem.batches(0)])
    after = torch_run.outcome([]).tree(), jax_run.outcome([]).tree()
    assert_close_trees(after, before, tolerance("interchange"), "weights and Adam state after a refused step")
