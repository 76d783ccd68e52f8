"""Property 7: the task id is static: one compiled path per id, names alias indices, bad ids fail at trace time."""

from __future__ import annotations

from functools import partial

import jax
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import jax_impl
from parity_tests.backends import TEST_JIT_OPTIONS, jax_module, torch_model
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.strategies import invalid_task_ids, problems
from parity_tests.tolerances import tolerance


@settings(max_examples=examples(4))
@given(problem=problems())
def test_each_task_id_traces_its_own_path_and_a_name_equals_its_index(problem):
    module, params = jax_module(problem), problem.initial_params()
    x = problem.batch(0).x
    traced = []

    def logits(variables, inputs, task_id):
        traced.append(task_id)  # runs once per trace, never when a compiled path is reused
        return module.apply(variables, inputs, task_id=task_id)

    program = jax.jit(logits, static_argnames="task_id", compiler_options=TEST_JIT_OPTIONS)
    variables = jax_impl.import_params(params, module)
    by_index = [program(variables, x, task_id=i) for i in range(len(problem.tasks))]
    again = [program(variables, x, task_id=i) for i in range(len(problem.tasks))]
    assert traced == list(range(len(problem.tasks))), "each index traces once, and only once"
    by_name = [program(variables, x, task_id=name) for name in problem.names]
    assert traced[len(problem.tasks) :] == list(problem.names), "each name traces its own path once"
    assert [out.shape for out in by_index] == [(len(x), t.num_outputs) for t in problem.tasks]
    exact = tolerance("task_id")
    assert_close_trees(again, by_index, exact, "a compiled path called again")
    assert_close_trees(by_name, by_index, exact, "jax: a name and its index")
    model = torch_model(problem, params)
    with torch.no_grad():
        torch_by_name = [model(x, task_id=name) for name in problem.names]
        torch_by_index = [model(x, task_id=i) for i in range(len(problem.tasks))]
    assert_close_trees(torch_by_name, torch_by_index, exact, "torch: a name and its index")


def _error(call) -> tuple[type, str]:
    try:
        call()
    except (TypeError, ValueError) as error:
        return type(error), str(error)
    raise AssertionError("an invalid task_id was accepted")


@settings(max_examples=examples(10))
@given(data=st.data())
def test_an_invalid_task_id_fails_at_trace_time_in_both_backends(data):
    problem = data.draw(problems(max_tasks=3, max_input_dim=8, max_width=4, max_batch=3))
    bad = data.draw(invalid_task_ids(problem.names))
    params, x = problem.initial_params(), problem.batch(0).x
    module, model = jax_module(problem), torch_model(problem, params)
    variables = jax_impl.import_params(params, module)
    # make_jaxpr only traces: an error raised here is raised before anything is compiled or run
    jax_error = _error(lambda: jax.make_jaxpr(partial(module.apply, task_id=bad))(variables, x))
    torch_error = _error(lambda: model(x, task_id=bad))
    assert jax_error == torch_error, "both backends reject the id with the same error"
    assert str(bad) in jax_error[1] or repr(bad) in jax_error[1], f"the error names the bad id: {jax_error[1]}"


@settings(max_examples=examples(3))
@given(problem=problems(max_input_dim=8, max_width=4, max_batch=3))
def test_a_traced_task_id_is_rejected_as_not_static(problem):
    module = jax_module(problem)
    variables = jax_impl.import_params(problem.initial_params(), module)
    traced = jax.jit(lambda v, x, task_id: module.apply(v, x, task_id=task_id))
    error_type, message = _error(lambda: traced(variables, problem.batch(0).x, 0))
    assert error_type is TypeError and "static" in message, message
    torch_type, _ = _error(lambda: torch_model(problem, problem.initial_params())(problem.batch(0).x, task_id=torch.tensor(0)))
    assert torch_type is TypeError
