"""Property 1: weights move between the backends and through a weight file bit-exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from safetensors.numpy import load_file, save_file

import jax_impl
import torch_ref
from parity_tests.backends import jax_canonical, jax_module, precision, torch_model, torch_weights
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.strategies import problems
from parity_tests.tolerances import DTYPES, tolerance


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(20))
@given(problem=problems())
def test_torch_to_jax_to_torch_is_bit_exact(problem, dtype):
    exact = tolerance("interchange", dtype)
    start = problem.initial_params(dtype)
    with precision(dtype):
        model = torch_model(problem, start)
        exported = torch_ref.export_params(model)
        assert_close_trees(exported, start, exact, "torch export of imported weights")
        assert_close_trees(torch_weights(model), start, exact, "torch parameters in the canonical layout")
        params = jax_impl.import_params(exported, jax_module(problem))
        assert_close_trees(jax_canonical(params), start, exact, "jax tree of imported weights")
        back = torch_model(problem, jax_impl.export_params(params))
    assert_close_trees(torch_ref.export_params(back), start, exact, "torch -> jax -> torch")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(20))
@given(problem=problems())
def test_jax_to_torch_to_jax_is_bit_exact(problem, dtype):
    exact = tolerance("interchange", dtype)
    with precision(dtype):
        module = jax_module(problem)
        params = jax_impl.import_params(problem.initial_params(dtype), module)
        start = jax_impl.export_params(params)
        assert_close_trees(jax_canonical(params), start, exact, "jax export")
        model = torch_model(problem, start)
        again = jax_impl.import_params(torch_ref.export_params(model), module)
        assert_close_trees(jax_impl.export_params(again), start, exact, "jax -> torch -> jax")


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(20))
@given(problem=problems())
def test_weight_file_round_trip_is_bit_exact(problem, dtype):
    exact = tolerance("interchange", dtype)
    start = problem.initial_params(dtype)
    with precision(dtype), tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "weights.safetensors"
        save_file(torch_ref.export_params(torch_model(problem, start)), str(path))
        loaded = load_file(str(path))
        assert_close_trees(loaded, start, exact, "safetensors file, canonical names")
        params = jax_impl.import_params(loaded, jax_module(problem))
        save_file(jax_impl.export_params(params), str(path))
        assert_close_trees(torch_ref.export_params(torch_model(problem, load_file(str(path)))), start, exact, "file -> jax -> file -> torch")

