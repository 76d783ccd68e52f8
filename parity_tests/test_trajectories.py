"""Properties 5 and 6 at the step level: N Adam steps leave the same weights and optimiser state.

Each weighting is a case of its own; the tasks present in each step follow one of the library's
curricula, so heads that sit out steps (and keep their Adam state) are part of every trajectory.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_core import WEIGHTINGS
from parity_tests.backends import precision
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.runs import run_both
from parity_tests.strategies import AdamSettings, WeightingChoice, four_kinds_problem, trajectory_cases
from parity_tests.tolerances import DTYPES, tolerance


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighting", WEIGHTINGS)
@settings(max_examples=examples(2))
@given(data=st.data())
def test_adam_trajectories_agree_for_every_weighting(weighting, dtype, data):
    case = data.draw(trajectory_cases(dtype, (weighting,)))
    with precision(dtype):
        torch_run, jax_run = run_both(case.stream.problem, case.stream.steps(dtype), case.adam, case.weighting, dtype)
    assert_close_trees(jax_run.tree(), torch_run.tree(), tolerance("trajectory", dtype), f"{len(case.stream.schedule)} steps")


def test_four_tasks_of_four_kinds_agree_after_25_steps():
    # The independent check: 25 steps of make_train_step, one task of each kind, weights within 1e-4.
    problem = four_kinds_problem()
    steps = [problem.batches(i) for i in range(25)]
    torch_run, jax_run = run_both(problem, steps, AdamSettings(), WeightingChoice("sum"), np.float32)
    assert tolerance("trajectory").rtol <= 1e-4
    assert_close_trees(jax_run.tree(), torch_run.tree(), tolerance("trajectory"), "four kinds, 25 steps")
