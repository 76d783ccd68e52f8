"""Property 8: one task alone is a single-task network, and a step never touches an absent head."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.runs import JaxRun, TorchRun
from parity_tests.strategies import WeightingChoice, adam_settings, problems
from parity_tests.tolerances import tolerance

RUNS = {"torch": TorchRun, "jax": JaxRun}


def _keys(names, outcome_tree: dict) -> dict:
    """The entries of ``outcome_tree`` ({"weights", "adam": {"m", "v", "step"}}) for canonical names."""
    pick = lambda d: {k: d[k] for k in names}  # noqa: E731 - applied to each part alike
    return {"weights": pick(outcome_tree["weights"]), "adam": {part: pick(d) for part, d in outcome_tree["adam"].items()}}


def _layer_names(problem, task: str) -> list[str]:
    trunk = [f"trunk.{i}.{leaf}" for i in range(len(problem.hidden_dims)) for leaf in ("kernel", "bias")]
    return trunk + [f"heads.{task}.kernel", f"heads.{task}.bias"]


@pytest.mark.parametrize("backend", RUNS)
@settings(max_examples=examples(3))
@given(problem=problems(min_tasks=2, stepped=True), adam=adam_settings(), data=st.data())
def test_one_task_of_a_multi_task_network_is_a_single_task_network(backend, problem, adam, data):
    task = data.draw(st.sampled_from(problem.names))
    steps = [problem.batches(i, (task,)) for i in range(data.draw(st.integers(1, 8)))]
    start = problem.initial_params()
    single = problem.restricted((task,))
    multi_run = RUNS[backend](problem, adam, WeightingChoice("sum"), np.float32, params=start)
    single_run = RUNS[backend](single, adam, WeightingChoice("sum"), np.float32, params={k: start[k] for k in _layer_names(problem, task)})
    multi_losses, single_losses = multi_run.run(steps), single_run.run(steps)
    multi, alone = multi_run.outcome(multi_losses), single_run.outcome(single_losses)
    shared = _layer_names(problem, task)
    assert_close_trees(
        {"losses": multi.losses, **_keys(shared, multi.tree())},
        {"losses": alone.losses, **_keys(shared, alone.tree())},
        tolerance("single_task"),
        f"{backend}: task {task!r} in the multi-task network vs alone",
    )


@pytest.mark.parametrize("backend", RUNS)
@settings(max_examples=examples(3))
@given(problem=problems(min_tasks=2, stepped=True), adam=adam_settings(), data=st.data())
def test_a_step_leaves_absent_heads_and_their_adam_state_untouched(backend, problem, adam, data):
    present = data.draw(st.lists(st.sampled_from(problem.names), min_size=1, max_size=len(problem.names) - 1, unique=True))
    joint_steps = data.draw(st.integers(0, 3))
    run = RUNS[backend](problem, adam, WeightingChoice("sum"), np.float32)
    run.run([problem.batches(i) for i in range(joint_steps)])
    before = run.outcome([]).tree()
    run.run([problem.batches(joint_steps, tuple(present))])
    after = run.outcome([]).tree()
    absent = [name for name in problem.names if name not in present]
    absent_keys = [f"heads.{name}.{leaf}" for name in absent for leaf in ("kernel", "bias")]
    assert_close_trees(_keys(absent_keys, after), _keys(absent_keys, before), tolerance("head_isolation"), f"{backend}: heads {absent}")
    # The step did train: the trunk's Adam step count moved (else the check above would prove nothing).
    assert after["adam"]["step"]["trunk.0.kernel"] == before["adam"]["step"]["trunk.0.kernel"] + 1
