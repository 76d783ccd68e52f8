"""torch_ref.lazy_adam: Adam whose first-layer kernel updates only the rows a step's sparse input touches."""

import copy

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import torch_ref
from mtl_core.checkpoint import read_checkpoint
from parity_tests.compare import assert_close_trees
from parity_tests.tolerances import tolerance
from torch_ref.distributed import DistributedTrainStep
from torch_ref.optimizer import LazyAdam

LR = 1e-2


def new_model(helpers, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    return torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid").to(dtype)


def rows_in(helpers, columns, seed, also=()) -> sp.csr_matrix:
    """A batch of rows of three counts 1..3 each, at columns drawn from ``columns``; plus 2.0 at the (row, column)s ``also``."""
    rng = np.random.default_rng(seed)
    X = np.zeros((helpers.batch_rows, helpers.input_dim), np.float32)
    for row in X:
        row[rng.choice(columns, 3, replace=False)] = rng.integers(1, 4, 3)
    for cell in also:
        X[cell] = 2.0
    return sp.csr_matrix(X)


def with_stored_zero(X: sp.csr_matrix, column: int) -> sp.csr_matrix:
    """``X`` plus an explicitly stored 0.0 at (0, column), a cell it leaves empty."""
    coo = X.tocoo()
    stored = sp.csr_matrix((np.append(coo.data, 0.0), (np.append(coo.row, 0), np.append(coo.col, column))), shape=X.shape)
    assert stored.nnz == X.nnz + 1 and stored[0, column] == 0
    return stored


def lazy_steps(helpers) -> list[dict]:
    """Steps whose tasks touch disjoint, then overlapping rows; one without yelp; one with a stored zero."""
    specs = {t.name: t for t in helpers.tasks}

    def batch(name, X, seed):
        return X, helpers.random_labels(specs[name], helpers.batch_rows, np.random.default_rng(seed))

    return [
        {  # row 5 is touched by the first step ...
            "movie": batch("movie", rows_in(helpers, range(0, 30), seed=1, also=[(0, 5)]), 1),
            "yelp": batch("yelp", rows_in(helpers, range(30, 60), seed=2), 2),
        },
        {"movie": batch("movie", rows_in(helpers, range(20, 50), seed=3), 3)},
        {  # ... and only by a stored zero in the third: it must keep its weights and moments there
            "movie": batch("movie", with_stored_zero(rows_in(helpers, range(90, 100), seed=4), 5), 4),
            "yelp": batch("yelp", rows_in(helpers, range(40, 50), seed=5), 5),
        },
    ]


def touched(batches) -> list[int]:
    """The columns holding a non-zero value in any of the batches, sorted."""
    return sorted(set().union(*(x.indices[x.data != 0].tolist() for x, _ in batches.values())))


def sparse_adam_step(model, sparse_adam, adam, batches) -> None:
    """The reference: torch.optim.SparseAdam on the kernel, Adam on the rest, the summed mean losses."""
    sparse_adam.zero_grad(set_to_none=True)
    adam.zero_grad(set_to_none=True)
    total = 0.0
    with model.trunk[0].sparse_gradient():
        for name, (x, y) in batches.items():
            clean = sp.csr_matrix(x, copy=True)
            clean.eliminate_zeros()
            logits = model(clean, name)
            if name == "yelp":
                total = total + F.cross_entropy(logits, torch.as_tensor(y))
            else:
                total = total + F.binary_cross_entropy_with_logits(logits, torch.as_tensor(y).to(logits))
    total.backward()
    sparse_adam.step()
    adam.step()


def same_params(a, b) -> bool:
    a, b = torch_ref.export_params(a), torch_ref.export_params(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def kernel_state(model, optimizer) -> dict:
    """Copies of the first layer's kernel and its moments (zeros before the first step)."""
    kernel = model.trunk[0].weight
    state = optimizer.state.get(kernel, {})
    return {"kernel": kernel.detach().clone(), **{k: state.get(k, torch.zeros_like(kernel)).clone() for k in ("exp_avg", "exp_avg_sq")}}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lazy_adam_equals_sparse_adam_on_the_kernel_and_adam_elsewhere(helpers, dtype):
    model = new_model(helpers, getattr(torch, dtype))
    reference = copy.deepcopy(model)
    optimizer = torch_ref.lazy_adam(model, lr=LR)
    kernel = reference.trunk[0].weight
    sparse_adam = torch.optim.SparseAdam([kernel], lr=LR)
    adam = torch.optim.Adam([p for p in reference.parameters() if p is not kernel], lr=LR)
    step = torch_ref.make_train_step(model, optimizer)
    tol = tolerance("trajectory", dtype)
    for index, batches in enumerate(lazy_steps(helpers)):
        before = kernel_state(model, optimizer)
        step(batches)
        sparse_adam_step(reference, sparse_adam, adam, batches)
        assert_close_trees(dict(model.named_parameters()), dict(reference.named_parameters()), tol, f"step {index}")
        assert_close_trees(kernel_state(model, optimizer), kernel_state(reference, sparse_adam), tol, f"step {index}")
        untouched = sorted(set(range(helpers.input_dim)) - set(touched(batches)))  # keep weights and moments bit for bit
        after = kernel_state(model, optimizer)
        assert all(torch.equal(after[k][untouched], before[k][untouched]) for k in after)
    state = optimizer.state[model.trunk[0].weight]
    assert state["step"].dtype == torch.float32 and int(state["step"]) == sparse_adam.state[kernel]["step"] == 3
    assert 5 in touched(lazy_steps(helpers)[0]) and 5 not in touched(lazy_steps(helpers)[2])


def test_the_callers_matrix_keeps_its_stored_zero(helpers):
    model = new_model(helpers)
    batches = lazy_steps(helpers)[2]
    X = batches["movie"][0]
    data, indices = X.data.copy(), X.indices.copy()
    torch_ref.make_train_step(model, torch_ref.lazy_adam(model))(batches)
    assert np.array_equal(X.data, data) and np.array_equal(X.indices, indices) and np.any(X.data == 0)


@pytest.mark.parametrize("aggregator", [None, "upgrad"])
@pytest.mark.parametrize("make_optimizer, layout", [(torch_ref.lazy_adam, torch.sparse_coo), (torch_ref.adam, torch.strided)])
def test_only_lazy_adam_gives_the_kernel_a_sparse_gradient_of_the_touched_rows(helpers, make_optimizer, layout, aggregator):
    model = new_model(helpers)
    seen = []
    model.trunk[0].weight.register_hook(lambda grad: seen.append(grad.layout))
    batches = lazy_steps(helpers)[0]
    torch_ref.make_train_step(model, make_optimizer(model), aggregator=aggregator)(batches)
    grad = model.trunk[0].weight.grad
    assert seen == [layout] and grad.layout == layout
    if layout == torch.sparse_coo:
        assert grad.coalesce().indices()[0].tolist() == touched(batches)


@pytest.mark.parametrize("aggregator, prop", [(None, "gradients"), ("upgrad", "aggregation")])
def test_the_lazy_gradient_and_its_recorded_norm_equal_the_dense_ones(helpers, aggregator, prop):
    dense = new_model(helpers, torch.float64)
    lazy = copy.deepcopy(dense)
    batches = lazy_steps(helpers)[0]
    dense_step = torch_ref.make_train_step(dense, torch_ref.adam(dense), aggregator=aggregator)
    lazy_step = torch_ref.make_train_step(lazy, torch_ref.lazy_adam(lazy), aggregator=aggregator)
    _, _, dense_norms, _ = dense_step.run(dense_step.prepare(batches), record_norms=True)
    _, _, lazy_norms, _ = lazy_step.run(lazy_step.prepare(batches), record_norms=True)
    tol = tolerance(prop, "float64")
    assert_close_trees(lazy_norms, dense_norms, tol, "layer norms")
    dense_grad = dense.trunk[0].weight.grad
    assert_close_trees(lazy.trunk[0].weight.grad.to_dense(), dense_grad, tol, "kernel gradient")
    assert torch.count_nonzero(dense_grad.abs().sum(1)) == len(touched(batches)) and float(dense_norms[0]) > 0


def test_lazy_adam_refuses_dense_input_a_dense_kernel_gradient_and_another_model(helpers):
    model = new_model(helpers)
    optimizer = torch_ref.lazy_adam(model)
    before = copy.deepcopy(model)
    with pytest.raises(ValueError, match=r"lazy Adam .* scipy sparse .* got a dense input of shape \(12, 120\)"):
        torch_ref.make_train_step(model, optimizer)(helpers.batches(seed=0))
    assert same_params(model, before)
    x, y = helpers.batches(seed=0)["movie"]
    F.binary_cross_entropy_with_logits(model(x, "movie"), torch.as_tensor(y)).backward()  # a user's own loop
    with pytest.raises(ValueError, match=r"sparse gradient of the first layer's kernel, got a dense one.*sparse_gradient\(\)"):
        optimizer.step()
    with pytest.raises(ValueError, match=r"built for another model"):
        torch_ref.make_train_step(new_model(helpers), optimizer)
    with pytest.raises(TypeError, match=r"torch_ref.MultiTaskNetwork, got Linear"):
        torch_ref.lazy_adam(torch.nn.Linear(2, 2))


def test_lazy_adam_runs_step_hooks_once_and_refuses_a_closure(helpers):
    model = new_model(helpers)
    torch_ref.adam(model)  # torch patches Adam.step with its hook runner when an Adam is built
    optimizer = torch_ref.lazy_adam(model)
    calls = []
    optimizer.register_step_pre_hook(lambda *_: calls.append("pre"))
    optimizer.register_step_post_hook(lambda *_: calls.append("post"))
    torch_ref.make_train_step(model, optimizer)(lazy_steps(helpers)[0])
    assert calls == ["pre", "post"] and model.trunk[0].weight.grad.layout == torch.sparse_coo
    with pytest.raises(ValueError, match=r"lazy Adam takes no closure"):
        optimizer.step(lambda: 0.0)


def test_lazy_adam_refuses_data_parallel_training(helpers):
    model = new_model(helpers)  # refused before torch.distributed is asked anything: no process group needed
    with pytest.raises(ValueError, match=r"lazy Adam does not support data-parallel training"):
        DistributedTrainStep(model, torch_ref.lazy_adam(model))


def test_a_lazy_fit_lowers_the_loss_and_differs_from_a_dense_fit(helpers, reviews):
    lazy, dense = new_model(helpers), new_model(helpers)
    _, history = torch_ref.fit(lazy, reviews[0], epochs=6, batch_size=16, optimizer=torch_ref.lazy_adam(lazy, lr=LR))
    torch_ref.fit(dense, reviews[0], epochs=6, batch_size=16, optimizer=torch_ref.adam(dense, lr=LR))
    assert history["total_loss"][-1] < history["total_loss"][0]
    assert not torch.allclose(lazy.trunk[0].weight, dense.trunk[0].weight, rtol=1e-3)


def test_a_fit_resumed_from_a_lazy_checkpoint_equals_the_uninterrupted_fit(helpers, reviews, tmp_path):
    settings = dict(batch_size=16, seed=3)
    whole = new_model(helpers)
    whole_optimizer = torch_ref.lazy_adam(whole, lr=LR)
    torch_ref.fit(whole, reviews[0], epochs=2, optimizer=whole_optimizer, **settings)
    model = new_model(helpers)
    optimizer = torch_ref.lazy_adam(model, lr=LR)
    torch_ref.fit(model, reviews[0], epochs=1, optimizer=optimizer, **settings)
    torch_ref.save_checkpoint(tmp_path / "lazy.safetensors", model, optimizer)
    assert read_checkpoint(tmp_path / "lazy.safetensors").adam.optimizer == "lazy_adam"
    loaded, restored = torch_ref.load_checkpoint(tmp_path / "lazy.safetensors")
    assert isinstance(restored, LazyAdam) and restored.kernel is loaded.trunk[0].weight
    torch_ref.fit(loaded, reviews[0], epochs=1, optimizer=restored, first_epoch=1, **settings)
    assert same_params(loaded, whole)
    resumed, uninterrupted = kernel_state(loaded, restored), kernel_state(whole, whole_optimizer)
    assert all(torch.equal(resumed[k], uninterrupted[k]) for k in resumed)


def test_a_dense_adam_checkpoint_still_restores_dense_adam(helpers, tmp_path):
    model = new_model(helpers)
    torch_ref.save_checkpoint(tmp_path / "dense.safetensors", model, torch_ref.adam(model))
    _, restored = torch_ref.load_checkpoint(tmp_path / "dense.safetensors")
    assert read_checkpoint(tmp_path / "dense.safetensors").adam.optimizer == "adam" and type(restored) is torch.optim.Adam


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")
def test_a_lazy_step_on_torch_sparse_csr_input_equals_one_on_scipy_input(helpers):
    scipy_model = new_model(helpers)
    csr_model = copy.deepcopy(scipy_model)
    batches = lazy_steps(helpers)[2]  # holds a stored zero
    as_csr = lambda X: torch.sparse_csr_tensor(*(torch.from_numpy(a) for a in (X.indptr, X.indices, X.data)), X.shape, check_invariants=True)  # noqa: E731
    torch_ref.make_train_step(scipy_model, torch_ref.lazy_adam(scipy_model))(batches)
    torch_ref.make_train_step(csr_model, torch_ref.lazy_adam(csr_model))({n: (as_csr(x), y) for n, (x, y) in batches.items()})
    assert same_params(csr_model, scipy_model)
    assert csr_model.trunk[0].weight.grad.coalesce().indices()[0].tolist() == touched(batches)
