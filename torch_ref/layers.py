"""The trunk's first layer: a Linear layer that also takes sparse bag-of-words rows."""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

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
            summed = F.embedding_bag(  # (n, out): sum over each row's non-zeros of value * weight[column]
                x.indices, self.weight, x.offsets, mode="sum", per_sample_weights=x.values, sparse=self.sparse_kernel_gradient
            )
            return summed + self.bias
        if self.sparse_kernel_gradient:
            raise ValueError(
                "lazy Adam updates the first-layer rows that sparse input touches: pass the batches as scipy sparse "
                f"matrices or torch sparse CSR tensors, got a dense input of shape {tuple(x.shape)}"
            )
        return x @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
