"""Lazy Adam in both backends: whole fits with torch_ref.lazy_adam and jax_impl.lazy_adam agree.

Lazy Adam moves only the first-layer rows a step's sparse input touches (SparseAdam's update), so
its trajectory is not exact Adam's: the two backends are compared with each other, and with exact
Adam only to show that the property would catch a backend falling back to it.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_core import TaskSpec
from parity_tests.backends import precision
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.runs import fit_both
from parity_tests.strategies import FitProblem, Problem, fit_problems
from parity_tests.tolerances import DTYPES, tolerance


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(3))
@given(data=st.data())
def test_lazy_fits_agree_epoch_by_epoch(dtype, data):
    case = data.draw(fit_problems(dtype, weighting_names=("sum", "uncertainty", "dwa")))
    with precision(dtype):
        torch_side, jax_side = fit_both(case, dtype, lazy=True)
    assert_close_trees(jax_side, torch_side, tolerance("fit", dtype), f"lazy fit, {case.epochs} epochs")


def test_a_lazy_fit_is_not_exact_adams_where_steps_leave_rows_untouched():
    # The negative control of the property above: with batches of four sparse rows most steps miss
    # some columns, so lazy and exact Adam part: a backend silently running exact Adam would fail it.
    tasks = (TaskSpec("a", "binary", 1), TaskSpec("b", "multiclass", 3))
    problem = Problem(tasks, 64, (6,), "sigmoid", (4, 4), ("counts", "counts"), (True, True), False, seed=3)
    case = FitProblem(problem, (24, 24), epochs=2, batch_size=4, lr=1e-2, curriculum="round_robin", weighting="sum", grad_norm_every=1)
    with precision("float64"):
        lazy = fit_both(case, "float64", lazy=True)
        exact = fit_both(case, "float64")
    kernel = "trunk.0.kernel"
    for backend in (0, 1):
        assert not np.allclose(lazy[backend]["weights"][kernel], exact[backend]["weights"][kernel], rtol=1e-6, atol=0)
