"""Property 2: every task's logits agree, for dense and sparse input, in both backends."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

import jax_impl
from mtl_core import pad_rows
from parity_tests.backends import jax_logits, jax_module, precision, torch_model
from parity_tests.compare import assert_close_trees
from parity_tests.profiles import examples
from parity_tests.strategies import problems
from parity_tests.tolerances import DTYPES, tolerance


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=examples(5))
@given(problem=problems())
def test_every_task_logits_agree_for_dense_and_sparse_input(problem, dtype):
    params = problem.initial_params(dtype)
    batches = problem.batches(dtype=dtype)
    with precision(dtype):
        model = torch_model(problem, params)
        module = jax_module(problem)
        with torch.no_grad():
            reference = {name: model(torch.from_numpy(b.x), task_id=name) for name, b in batches.items()}
            torch_scipy = {name: model(b.csr(), task_id=name) for name, b in batches.items()}
            torch_csr = {name: model(torch.from_numpy(b.x).to_sparse_csr(), task_id=name) for name, b in batches.items()}
        calls = [(name, b.x) for name, b in batches.items()] + [(name, pad_rows(b.csr())) for name, b in batches.items()]
        logits = jax_logits(module, jax_impl.import_params(params, module), calls)
    jax_dense, jax_sparse = dict(zip(batches, logits[: len(batches)])), dict(zip(batches, logits[len(batches) :]))
    assert_close_trees(
        {"torch scipy CSR": torch_scipy, "torch sparse CSR": torch_csr, "jax dense": jax_dense, "jax sparse": jax_sparse},
        {key: reference for key in ("torch scipy CSR", "torch sparse CSR", "jax dense", "jax sparse")},
        tolerance("forward", dtype),
        "logits against torch_ref on dense input",
    )
