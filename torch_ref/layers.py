"""The trunk's first layer: a Linear layer that also takes sparse bag-of-words rows."""

from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from torch_ref.inputs import SparseRows


class SparseLinear(nn.Module):
    """``x @ weight + bias`` for dense x (n, in) or SparseRows; initialised like ``nn.Linear``.

    ``weight`` is stored (in_features, out_features), the transpose of ``nn.Linear``'s, so that
    ``F.embedding_bag`` can read one row per non-zero: for bag-of-words input this costs
    O(nnz * out) instead of O(n * in * out), and its gradient stays a dense tensor for Adam
    (a sparse one of the touched rows inside ``sparse_gradient()``, for lazy Adam).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.sparse_kernel_gradient = False  # set by sparse_gradient()
        self._gradient_memory = _ReusedMemory()  # where the CPU backward writes the kernel's gradient
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: kernel and bias uniform in +-1/sqrt(fan_in).
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    @contextlib.contextmanager
    def sparse_gradient(self):
        """Within: the kernel's gradient is a sparse (in, out) tensor of the rows the input touches.

        Lazy Adam (torch_ref.optimizer) updates only those rows; a dense input raises ValueError here.
        """
        previous, self.sparse_kernel_gradient = self.sparse_kernel_gradient, True
        try:
            yield
        finally:
            self.sparse_kernel_gradient = previous

    def forward(self, x: "torch.Tensor | SparseRows") -> torch.Tensor:
        if isinstance(x, SparseRows):
            weight = self.weight
            if weight.device.type == "cpu" and weight.dtype in _SCIPY_DTYPES and torch.is_grad_enabled() and not x.values.requires_grad:
                return _BagOfWords.apply(weight, x, None if self.sparse_kernel_gradient else self._gradient_memory) + self.bias
            return _bag_of_words(weight, x, sparse=self.sparse_kernel_gradient) + self.bias
        if self.sparse_kernel_gradient:
            raise ValueError(
                "lazy Adam updates the first-layer rows that sparse input touches: pass the batches as scipy sparse "
                f"matrices or torch sparse CSR tensors, got a dense input of shape {tuple(x.shape)}"
            )
        return x @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


_SCIPY_DTYPES = (torch.float32, torch.float64)  # what scipy's sparse matrices hold (not float16, bfloat16)


def _bag_of_words(weight: torch.Tensor, x: SparseRows, sparse: bool = False) -> torch.Tensor:
    """(n, out): the sum over each row's non-zeros of value * weight[column]."""
    return F.embedding_bag(x.indices, weight, x.offsets, mode="sum", per_sample_weights=x.values, sparse=sparse)


class _BagOfWords(torch.autograd.Function):
    """``_bag_of_words`` on a CPU, whose kernel gradient is a sparse-dense product X^T @ grad_output.

    Why: embedding_bag's CPU backward sorts the non-zeros and adds them row by row, into a fresh
    dense (in, out) tensor whose pages fault in anew every step, or into a sparse one with a row per
    non-zero that lazy Adam must then coalesce. Here scipy transposes the batch (a counting sort)
    and one CSR x dense product writes the gradient: dense, into the memory of the previous step's
    (``memory``), or, with ``memory=None``, sparse and already coalesced, one row per touched
    feature. Measured on 2 CPU cores, torch_ref.fit's ms per step, embedding_bag's backward -> this:
    Adam 4.1 -> 3.2 at V = 20,000 and 72 -> 25 at V = 2^18; lazy Adam 7.7-8.0 -> 6.1-6.2 and
    8.2-8.4 -> 7.7-7.9. The product writes the whole gradient (beta=0) rather than adding to a zero
    fill: a further 1.15x at V = 20,000 and 1.19x at 2^18 (Adam). Accelerators, and float16 or
    bfloat16 weights, keep embedding_bag's own backward.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor, x: SparseRows, memory: "_ReusedMemory | None") -> torch.Tensor:
        ctx.x, ctx.memory = x, memory
        return _bag_of_words(weight, x)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        x, memory = ctx.x, ctx.memory
        if memory is None:
            touched, transposed = _transposed(x, touched_only=True)
            values = torch.mm(transposed, grad_output)  # (touched, out)
            grad = torch.sparse_coo_tensor(touched[None], values, (x.num_features, grad_output.shape[1]), is_coalesced=True, check_invariants=False)
            return grad, None, None
        grad = memory.take((x.num_features, grad_output.shape[1]), grad_output)
        return grad.addmm_(_transposed(x)[1], grad_output, beta=0), None, None  # beta=0: old contents ignored, NaNs too


def _transposed(x: SparseRows, touched_only: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The batch transposed, X^T (features, rows), as a torch CSR tensor, by scipy's counting sort.

    ``touched_only``: (the sorted features the batch holds (t,), X^T's rows of them (t, rows)), at a
    cost that grows with the non-zeros, not with the features; else (None, the whole X^T).
    """
    indptr = np.append(x.offsets.numpy(), x.indices.numel())
    indices, touched = x.indices.numpy(), None
    if touched_only:
        touched, indices = np.unique(indices, return_inverse=True)
    width = x.num_features if touched is None else touched.size
    columns = sp.csr_matrix((x.values.numpy(), indices, indptr), shape=(x.num_rows, width)).T.tocsr()
    with warnings.catch_warnings():  # torch's one-time notice that its sparse CSR support is in beta
        warnings.simplefilter("ignore", UserWarning)
        transposed = torch.sparse_csr_tensor(
            torch.from_numpy(columns.indptr), torch.from_numpy(columns.indices), torch.from_numpy(columns.data),
            size=columns.shape, check_invariants=False,  # scipy built it: valid by construction
        )
    return (None if touched is None else torch.from_numpy(touched), transposed)


_STORAGE_USE_COUNT = getattr(torch._C, "_storage_Use_Count", None)  # private; without it, memory is never reused


class _ReusedMemory:
    """The memory of the kernel's last CPU gradient, written again once nothing else holds it.

    Why: a fresh (in, out) gradient every step pays its page faults (0.8 ms a step at the blog's
    shape, measured), about as much as computing it. ``take`` hands out a new tensor over the old
    memory; autograd installs it as ``weight.grad`` without a copy, and once
    ``zero_grad(set_to_none=True)`` has dropped it the memory is free again. Memory anything else
    still holds (``.grad`` itself, or an old gradient a caller kept) is never written: new memory
    is taken. Scratch, so copies and pickles of the layer leave it behind.
    """

    def __init__(self):
        self.tensor = None

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.tensor = None

    def take(self, shape: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        tensor = self.tensor
        if tensor is None or tuple(tensor.shape) != shape or tensor.dtype != like.dtype or tensor.device != like.device or self._shared():
            tensor = self.tensor = like.new_empty(shape)
        return tensor.view(shape)

    def _shared(self) -> bool:
        if _STORAGE_USE_COUNT is None:
            return True
        return _STORAGE_USE_COUNT(self.tensor.untyped_storage()._cdata) > 2  # 2: self.tensor and the storage object asked
