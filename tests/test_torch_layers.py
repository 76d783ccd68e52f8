"""torch_ref's first layer on sparse rows: its CPU kernel gradient (X^T @ grad_output, written into
reused memory) against embedding_bag's own backward, and the memory's rules."""

import copy
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from torch_ref.inputs import sparse_rows
from torch_ref.layers import SparseLinear
from torch_ref.optimizer import touched_rows


def batch(seed: int, rows: int = 9, features: int = 40, dtype=np.float32):
    """CSR rows with empty rows among them and values of both signs."""
    rng = np.random.default_rng(seed)
    X = sp.random(rows, features, density=0.2, format="csr", random_state=rng, dtype=dtype)
    X.data = (X.data * 4 - 2).astype(dtype)
    X = sp.csr_matrix(sp.diags(np.arange(rows) > 0, dtype=dtype) @ X)  # row 0 empty
    X.eliminate_zeros()
    return sparse_rows(X) if dtype == np.float32 else sparse_rows(X)._replace(values=torch.from_numpy(X.data))


def new_layer(dtype=torch.float32) -> SparseLinear:
    torch.manual_seed(0)
    return SparseLinear(40, 5).to(dtype)


def embedding_bag_gradient(layer: SparseLinear, x, grad_output: torch.Tensor) -> torch.Tensor:
    weight = layer.weight.detach().clone().requires_grad_(True)
    F.embedding_bag(x.indices, weight, x.offsets, mode="sum", per_sample_weights=x.values).backward(grad_output)
    return weight.grad


def backward(layer: SparseLinear, x, grad_output: torch.Tensor) -> torch.Tensor:
    out = layer(x)
    out.backward(grad_output)
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_cpu_kernel_gradient_is_embedding_bags(dtype):
    layer = new_layer(dtype)
    x = batch(0, dtype=np.float32 if dtype == torch.float32 else np.float64)
    grad_output = torch.randn(9, 5, dtype=dtype, generator=torch.Generator().manual_seed(1))
    out = backward(layer, x, grad_output)
    assert type(out.grad_fn).__name__ == "AddBackward0" and "BagOfWords" in type(out.grad_fn.next_functions[0][0]).__name__
    expected = embedding_bag_gradient(layer, x, grad_output)
    assert layer.weight.grad.dtype == dtype and layer.weight.grad.layout == torch.strided
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(layer.weight.grad[~torch.isin(torch.arange(40), x.indices)]) == 0
    torch.testing.assert_close(layer.bias.grad, grad_output.sum(0))


def test_two_backward_passes_add_up_as_autograd_does():
    layer = new_layer()
    x1, x2 = batch(1), batch(2)
    g1, g2 = torch.randn(9, 5), torch.randn(9, 5)
    backward(layer, x1, g1)
    backward(layer, x2, g2)  # no zero_grad in between: the gradients sum
    expected = embedding_bag_gradient(layer, x1, g1) + embedding_bag_gradient(layer, x2, g2)
    torch.testing.assert_close(layer.weight.grad, expected, rtol=1e-6, atol=1e-6)


def test_the_memory_is_reused_once_free_and_never_while_a_caller_holds_it():
    layer = new_layer()
    backward(layer, batch(3), torch.randn(9, 5))
    memory = layer._gradient_memory.tensor
    assert layer.weight.grad.data_ptr() == memory.data_ptr()  # installed as .grad without a copy
    memory.fill_(float("nan"))  # whatever the memory holds is overwritten, NaNs too
    layer.weight.grad = None  # what zero_grad(set_to_none=True) does
    x, grad_output = batch(4), torch.randn(9, 5)
    backward(layer, x, grad_output)
    assert layer._gradient_memory.tensor is memory and layer.weight.grad.data_ptr() == memory.data_ptr()  # written again
    torch.testing.assert_close(layer.weight.grad, embedding_bag_gradient(layer, x, grad_output), rtol=1e-6, atol=1e-6)

    kept = layer.weight.grad
    kept_values = kept.clone()
    layer.weight.grad = None
    backward(layer, batch(5), torch.randn(9, 5))
    assert torch.equal(kept, kept_values)  # the caller's old gradient is untouched
    assert layer._gradient_memory.tensor is not memory and layer.weight.grad.data_ptr() != kept.data_ptr()


def test_copies_and_pickles_of_the_layer_leave_the_scratch_memory_behind():
    layer = new_layer()
    backward(layer, batch(6), torch.randn(9, 5))
    assert layer._gradient_memory.tensor is not None
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert clone._gradient_memory.tensor is None
        torch.testing.assert_close(clone.weight, layer.weight)
        clone.weight.grad = None
        backward(clone, batch(6), torch.ones(9, 5))
        torch.testing.assert_close(clone.weight.grad, embedding_bag_gradient(clone, batch(6), torch.ones(9, 5)))


def test_without_gradients_the_layer_is_a_plain_embedding_bag():
    layer = new_layer()
    x = batch(7)
    with torch.no_grad():
        out = layer(x)
    assert out.grad_fn is None
    torch.testing.assert_close(out, F.embedding_bag(x.indices, layer.weight, x.offsets, mode="sum", per_sample_weights=x.values) + layer.bias)


def test_inside_sparse_gradient_the_kernel_gradient_is_the_touched_rows_once_each():
    layer = new_layer()
    x = batch(8)
    grad_output = torch.randn(9, 5, generator=torch.Generator().manual_seed(2))
    with layer.sparse_gradient():
        backward(layer, x, grad_output)
    grad = layer.weight.grad
    assert grad.is_sparse
    rows, values = touched_rows(grad)
    assert torch.equal(rows, torch.unique(x.indices)) and values.shape == (rows.numel(), 5)
    torch.testing.assert_close(grad.to_dense(), embedding_bag_gradient(layer, x, grad_output), rtol=1e-6, atol=1e-6)


def test_touched_rows_sums_the_rows_a_gradient_holds_twice():
    indices = torch.tensor([[3, 1, 3]])
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    rows, summed = touched_rows(torch.sparse_coo_tensor(indices, values, (5, 2), check_invariants=True))
    assert torch.equal(rows, torch.tensor([1, 3]))
    assert torch.equal(summed, torch.tensor([[3.0, 4.0], [6.0, 8.0]]))
