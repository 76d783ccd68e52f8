"""Checkpoints cross frameworks: what one backend saved, the other predicts with and trains on.

A fit of k epochs is saved with its Adam state by one backend, loaded by the other and trained for
the remaining epochs (``first_epoch=k``): weights, Adam state and the later epochs' history match
the saving backend's uninterrupted fit, as two fits of one run do (property 5's tolerance).
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jax_impl
import torch_ref
from mtl_core import pad_rows
from parity_tests.backends import jax_adam_state, jax_canonical, jax_logits, jax_module, torch_adam_state, torch_model, torch_weights
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.runs import torch_log_var, torch_weighting_state
from parity_tests.strategies import FitProblem, fit_problems
from parity_tests.tolerances import tolerance


def _arguments(case: FitProblem) -> dict:
    return dict(
        batch_size=case.batch_size, lr=case.lr, seed=case.problem.seed, curriculum=case.curriculum,
        eval_data=case.data(1), weighting=case.weighting, grad_norm_every=case.grad_norm_every,
    )


def _torch_outcome(model, optimizer, history) -> dict:
    log_var = torch_log_var(optimizer)
    return {
        "weights": torch_weights(model, log_var), "adam": torch_adam_state(model, optimizer, log_var),
        "weighting": torch_weighting_state(optimizer), "loss": history["loss"],
    }


def _jax_outcome(params, state, history) -> dict:
    weighting = {key: np.array(value) for key, value in state.weighting.items()}
    return {"weights": jax_canonical(params), "adam": jax_adam_state(state.opt_state), "weighting": weighting, "loss": history["loss"]}


def _torch_fit(case: FitProblem, epochs: int, model=None, optimizer=None, **resume):
    model = torch_model(case.problem, case.problem.initial_params()) if model is None else model
    optimizer = torch_ref.adam(model, case.lr) if optimizer is None else optimizer
    _, history = torch_ref.fit(model, case.data(0), optimizer=optimizer, epochs=epochs, **_arguments(case), **resume)
    return model, optimizer, history


def _jax_fit(case: FitProblem, epochs: int, module=None, params=None, **resume):
    module = jax_module(case.problem) if module is None else module
    params = jax_impl.import_params(case.problem.initial_params(), module) if params is None else params
    params, history, state = jax_impl.fit(module, case.data(0), params=params, epochs=epochs, return_state=True, **_arguments(case), **resume)
    return params, state, history


@pytest.mark.parametrize("saved_by", ["torch", "jax"])
@settings(max_examples=examples(3))
@given(data=st.data())
def test_training_resumed_in_the_other_backend_continues_the_uninterrupted_run(saved_by, data):
    case = data.draw(fit_problems("float32"))
    case = replace(case, epochs=data.draw(st.integers(2, 3)))
    first = data.draw(st.integers(1, case.epochs - 1))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        if saved_by == "torch":
            model, optimizer, history = _torch_fit(case, first)
            torch_ref.save_checkpoint(path, model, optimizer, weighting=case.weighting)
            module, params, opt_state, saved = jax_impl.load_checkpoint(path, with_extras=True)
            resumed = _jax_outcome(*_jax_fit(
                case, case.epochs - first, module, params, opt_state=opt_state, weighting_state=saved.weighting_state,
                first_epoch=first, previous_losses=history["loss"],
            ))
            whole = _torch_outcome(*_torch_fit(case, case.epochs))
        else:
            params, state, history = _jax_fit(case, first)
            jax_impl.save_checkpoint(
                path, jax_module(case.problem), params, state.opt_state, weighting=case.weighting, weighting_state=state.weighting
            )
            model, optimizer = torch_ref.load_checkpoint(path)
            resumed = _torch_outcome(*_torch_fit(
                case, case.epochs - first, model, optimizer, first_epoch=first, previous_losses=history["loss"]
            ))
            whole = _jax_outcome(*_jax_fit(case, case.epochs))
    whole["loss"] = {name: values[first:] for name, values in whole["loss"].items()}
    assert_close_trees(resumed, whole, tolerance("fit"), f"saved by {saved_by} after {first} of {case.epochs} epochs, resumed in the other")


@settings(max_examples=examples(3))
@given(data=st.data())
def test_a_checkpoint_predicts_the_same_in_the_other_backend(data):
    case = data.draw(fit_problems("float32", max_rows=12))
    model, optimizer, _ = _torch_fit(case, 1)
    batches = case.problem.batches()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.safetensors"
        torch_ref.save_checkpoint(path, model, optimizer, weighting=case.weighting)
        module, params, _ = jax_impl.load_checkpoint(path)
    names = list(batches)
    expected = {name: model(batches[name].csr(), task_id=name).detach().numpy() for name in names}
    actual = dict(zip(names, jax_logits(module, params, [(name, pad_rows(batches[name].csr())) for name in names])))
    assert_close_trees(actual, expected, tolerance("forward"), "torch checkpoint, predicted in jax")
