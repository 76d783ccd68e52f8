"""What the network accepts as input, turned into tensors once, where it enters.

Dense inputs stay dense; sparse ones (scipy CSR or torch sparse CSR) become a ``SparseRows``
that the first layer reads with ``F.embedding_bag``: no row is ever densified. Explicitly stored
zeros are left out, so that the indices are exactly the kernel rows an input touches (lazy Adam
updates those).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
import torch

from mtl_core.array_ops import holds_real_numbers
from mtl_core.tasks import TaskSpec


class SparseRows(NamedTuple):
    """CSR rows as EmbeddingBag wants them: flat column ids, row start offsets, values."""

    indices: torch.Tensor  # (nnz,) int64
    offsets: torch.Tensor  # (n,) int64, offsets[r] = start of row r
    values: torch.Tensor  # (nnz,) float
    num_rows: int
    num_features: int


def sparse_rows(X: sp.spmatrix) -> SparseRows:
    """SparseRows from a scipy sparse matrix (no copy of the CSR arrays where dtypes allow)."""
    X = sp.csr_matrix(X)
    return SparseRows(
        indices=torch.from_numpy(X.indices.astype(np.int64, copy=False)),
        offsets=torch.from_numpy(X.indptr[:-1].astype(np.int64, copy=False)),
        values=torch.from_numpy(X.data.astype(np.float32, copy=False)),
        num_rows=X.shape[0],
        num_features=X.shape[1],
    )


def _without_zeros(x: SparseRows) -> SparseRows:
    """``x`` less its explicitly stored zeros (a copy; ``x`` itself when it holds none)."""
    keep = x.values != 0  # (nnz,)
    if bool(keep.all()):
        return x
    lengths = torch.diff(x.offsets, append=x.offsets.new_tensor([x.indices.numel()]))  # (n,)
    row = torch.repeat_interleave(torch.arange(x.num_rows, device=x.offsets.device), lengths)  # (nnz,)
    kept = torch.bincount(row[keep], minlength=x.num_rows)  # (n,) non-zeros per row
    return SparseRows(x.indices[keep], torch.cumsum(kept, 0) - kept, x.values[keep], x.num_rows, x.num_features)


def as_network_input(x, input_dim: int, dtype: torch.dtype, device: torch.device):
    """A dense tensor (n, input_dim) or SparseRows, on the model's device and dtype."""
    if sp.issparse(x):
        x = sparse_rows(x)
    elif isinstance(x, np.ndarray):
        if not holds_real_numbers(x.dtype):
            raise TypeError(f"input must hold real numbers, got dtype {x.dtype}")  # before torch.from_numpy fails in its own words
        x = torch.from_numpy(x)
    elif isinstance(x, torch.Tensor) and x.layout == torch.sparse_csr:
        crow = x.crow_indices()
        x = SparseRows(x.col_indices(), crow[:-1], x.values(), x.shape[0], x.shape[1])
    if isinstance(x, SparseRows):
        if x.num_features != input_dim:
            raise ValueError(f"input has {x.num_features} features, the model expects input_dim={input_dim}")
        x = _without_zeros(x)
        return SparseRows(
            to_device(x.indices, device, torch.int64),
            to_device(x.offsets, device, torch.int64),
            to_device(x.values, device, dtype),
            x.num_rows,
            x.num_features,
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"input must be a torch.Tensor, a numpy array, a scipy sparse matrix or a torch sparse CSR tensor, "
            f"got {type(x).__name__}"
        )
    if x.dim() != 2 or x.shape[1] != input_dim:
        raise ValueError(f"input must have shape (n, {input_dim}), got {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.int16, torch.int8, torch.uint8, torch.bool)):
        raise TypeError(f"input must hold real numbers, got dtype {x.dtype}")
    return to_device(x, device, dtype)


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor.to(device, dtype)``; from the host to a CUDA device through pinned memory, without waiting.

    Why: a copy from pageable host memory makes the host wait until the GPU has run all the work
    queued before it, at every batch array (about 9 times a step for 2 tasks), so the host never
    prepares a step while the GPU computes one. The pinned copy is the host's own (later changes to
    ``tensor`` do not reach the device), and torch's caching host allocator keeps it until the copy has run.
    """
    device = torch.device(device)
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device=device, dtype=dtype)
    staged = torch.empty(tensor.shape, dtype=dtype or tensor.dtype, pin_memory=True).copy_(tensor)  # a copy even of pinned input
    return staged.to(device, non_blocking=True)


def num_rows(x: "torch.Tensor | SparseRows") -> int:
    return x.num_rows if isinstance(x, SparseRows) else x.shape[0]


def concat_rows(inputs: list) -> "torch.Tensor | SparseRows | None":
    """Stack several batches' rows into one input (None when dense and sparse are mixed)."""
    if all(isinstance(x, SparseRows) for x in inputs):
        starts = [0]
        for x in inputs[:-1]:
            starts.append(starts[-1] + x.indices.shape[0])
        return SparseRows(
            indices=torch.cat([x.indices for x in inputs]),
            offsets=torch.cat([x.offsets + start for x, start in zip(inputs, starts)]),
            values=torch.cat([x.values for x in inputs]),
            num_rows=sum(x.num_rows for x in inputs),
            num_features=inputs[0].num_features,
        )
    if all(isinstance(x, torch.Tensor) for x in inputs):
        return torch.cat(inputs)
    return None


def as_labels(y, spec: TaskSpec, device: torch.device) -> torch.Tensor:
    """Canonical labels (see mtl_core.labels) as a tensor: int64 class ids or float targets."""
    tensor = torch.from_numpy(y) if isinstance(y, np.ndarray) else torch.as_tensor(y)
    return to_device(tensor, device, torch.int64 if spec.kind == "multiclass" else None)
