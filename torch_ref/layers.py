"""The trunk's first layer: a Linear layer that also takes sparse bag-of-words rows."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from torch_ref.inputs import SparseRows


class SparseLinear(nn.Module):
    """``x @ weight + bias`` for dense x (n, in) or SparseRows; initialised like ``nn.Linear``.

    ``weight`` is stored (in_features, out_features), the transpose of ``nn.Linear``'s, so that
    ``F.embedding_bag`` can read one row per non-zero: for bag-of-words input this costs
    O(nnz * out) instead of O(n * in * out), and its gradient stays a dense tensor for Adam.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: kernel and bias uniform in +-1/sqrt(fan_in).
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: "torch.Tensor | SparseRows") -> torch.Tensor:
        if isinstance(x, SparseRows):
            summed = F.embedding_bag(  # (n, out): sum over each row's non-zeros of value * weight[column]
                x.indices, self.weight, x.offsets, mode="sum", per_sample_weights=x.values
            )
            return summed + self.bias
        return x @ self.weight + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"
