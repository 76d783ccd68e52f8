"""Gradient-conflict methods in whole steps, trajectories and fits: torch_ref and jax_impl train one model.

Every aggregator of mtl_core.aggregation, with every loss weighting drawn beside it, at the step level
(Adam trajectories of drawn problems, as test_trajectories) and at the fit level (as test_fit).
Aggregators need more trunk parameters than tasks to have conflicts worth the name and well-posed
solves, so problems here have at least 4 inputs and trunk width 4. A step whose solver misses its
tolerance must do so in both backends; its direction is then not determined, and the run is not
compared past the verdicts. A fixed problem with four conflicting tasks checks the named methods
end away from the summed fit, and that each method's variant is told apart (negative controls).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtl_core.aggregation import AGGREGATORS, CAGrad, IMTLG, MGDA, PCGrad, UPGrad, resolve_aggregator
from parity_tests.backends import precision
from parity_tests.compare import assert_close_trees, expect_mismatch
from parity_tests.profiles import examples
from parity_tests.runs import fit_both, run_both
from parity_tests.strategies import AdamSettings, FitProblem, WeightingChoice, fit_problems, four_kinds_problem, trajectory_cases
from parity_tests.tolerances import DTYPES, tolerance

PROBLEM_OPTIONS = dict(min_input_dim=4, min_width=4)
# Each fit case pairs an aggregator with another curriculum and weighting: together they cover all.
FIT_CASES = [
    ("pcgrad", "round_robin", "sum"),
    ("cagrad", "proportional", "dwa"),
    ("mgda", "max_size_cycle", "uncertainty"),
    ("mgda_ub", "round_robin", "fixed"),
    ("imtlg", "round_robin", "mean"),
    ("nash_mtl", "sequential", "rlw"),
    ("upgrad", "round_robin", "famo"),
]
# A variant of each method that a comparison must tell apart from it.
VARIANTS = {
    "pcgrad": PCGrad(seed=1),
    "cagrad": CAGrad(c=0.6),
    "mgda": MGDA(representation=True),
    "mgda_ub": MGDA(),
    "imtlg": UPGrad(),
    "nash_mtl": IMTLG(),
    "upgrad": MGDA(),
}


def same_verdicts(torch_residuals: list, jax_residuals: list, aggregator) -> bool:
    """Both backends' solvers met their tolerance in every step (True), or missed it in the same steps (False)."""
    aggregator = resolve_aggregator(aggregator)
    torch_ok = [aggregator.converged(r) for r in torch_residuals]
    jax_ok = [aggregator.converged(r) for r in jax_residuals]
    assert torch_ok == jax_ok, f"solver verdicts differ: torch {torch_residuals}, jax {jax_residuals}"
    return all(torch_ok)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("aggregator", sorted(AGGREGATORS))
@settings(max_examples=examples(1))
@given(data=st.data())
def test_aggregated_adam_trajectories_agree(aggregator, dtype, data):
    case = data.draw(trajectory_cases(dtype, max_steps=20, **PROBLEM_OPTIONS))
    with precision(dtype):
        torch_run, jax_run = run_both(case.stream.problem, case.stream.steps(dtype), case.adam, case.weighting, dtype, aggregator=aggregator)
    if same_verdicts(torch_run.residuals, jax_run.residuals, aggregator):
        assert_close_trees(jax_run.tree(), torch_run.tree(), tolerance("trajectory", dtype), f"{aggregator}, {len(torch_run.losses)} steps")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("aggregator", "curriculum", "weighting"), FIT_CASES)
@settings(max_examples=examples(1))
@given(data=st.data())
def test_aggregated_fits_agree_epoch_by_epoch(aggregator, curriculum, weighting, dtype, data):
    case = data.draw(fit_problems(dtype, (curriculum,), (weighting,), aggregators=(aggregator,)))
    with precision(dtype):
        torch_side, jax_side = fit_both(case, dtype)
    assert torch_side["history"]["unconverged_steps"] == jax_side["history"]["unconverged_steps"]
    if not any(torch_side["history"]["unconverged_steps"]):
        assert_close_trees(jax_side, torch_side, tolerance("fit", dtype), f"{aggregator} fit, {case.epochs} epochs")


def conflicting_fit(aggregator) -> FitProblem:
    """Four tasks of four kinds on shared sparse counts: their gradients on the trunk conflict."""
    problem = four_kinds_problem(seed=3, hidden_dims=(16,), input_dim=64)
    return FitProblem(problem, rows=(48, 40, 36, 30), epochs=2, batch_size=8, lr=1e-3, curriculum="round_robin",
                      weighting="sum", grad_norm_every=1, aggregator=aggregator)


@pytest.fixture(scope="module")
def summed_fit():
    return fit_both(conflicting_fit(None), "float32")


@pytest.mark.parametrize("aggregator", ["pcgrad", "cagrad", "mgda", "nash_mtl"])
def test_named_methods_fit_alike_in_both_backends_and_away_from_the_summed_fit(aggregator, summed_fit):
    torch_side, jax_side = fit_both(conflicting_fit(aggregator), "float32")
    assert torch_side["history"]["unconverged_steps"] == [0, 0]
    assert tolerance("fit").rtol <= 5e-4
    assert_close_trees(jax_side, torch_side, tolerance("fit"), f"{aggregator} fit")
    with expect_mismatch():  # the method changed the training: its weights are not the summed fit's
        assert_close_trees(torch_side["weights"], summed_fit[0]["weights"], tolerance("fit"), f"{aggregator} vs sum")


@pytest.mark.parametrize("aggregator", sorted(VARIANTS))
def test_a_variant_of_each_method_fails_the_trajectory_check(aggregator):
    problem = four_kinds_problem(seed=4, hidden_dims=(16,), input_dim=64)
    steps = [problem.batches(i) for i in range(6)]
    torch_run, jax_run = run_both(problem, steps, AdamSettings(), WeightingChoice("sum"), np.float32, aggregator=aggregator,
                                  jax_aggregator=VARIANTS[aggregator])
    with expect_mismatch():
        assert_close_trees(jax_run.tree(), torch_run.tree(), tolerance("trajectory"), f"{aggregator} vs {VARIANTS[aggregator]}")
