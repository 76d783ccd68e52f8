"""A Dense layer initialised as PyTorch's ``nn.Linear``, that also takes sparse PaddedRows."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_core.sparse import PaddedRows
from jax_impl.inputs import feature_count


def torch_uniform(fan_in: int):
    """Initialiser: uniform in +-1/sqrt(fan_in), PyTorch's default for kernel and bias alike."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Linear(nn.Module):
    """``x @ kernel + bias`` with kernel (in, out); x dense (n, in) or PaddedRows.

    For PaddedRows the layer gathers one kernel row per non-zero and sums them weighted by the
    values: O(nnz * out) work, and padding (value 0) adds nothing.
    """

    features: int

    @nn.compact
    def __call__(self, x):
        fan_in = feature_count(x)
        if self.has_variable("params", "kernel"):
            expected = self.get_variable("params", "kernel").shape[0]
            if fan_in != expected:
                raise ValueError(f"input has {fan_in} features, layer {self.name!r} expects {expected}")
        kernel = self.param("kernel", torch_uniform(fan_in), (fan_in, self.features))
        bias = self.param("bias", torch_uniform(fan_in), (self.features,))
        if isinstance(x, PaddedRows):
            rows = kernel[x.indices]  # (n, width, out)
            return jnp.einsum("nw,nwo->no", x.values.astype(kernel.dtype), rows) + bias
        return x.astype(kernel.dtype) @ kernel + bias
