"""What the network and the step accept as input, as jax arrays.

``mtl_core.sparse.PaddedRows`` is registered here as a pytree (its ``num_features`` static), so
padded bag-of-words rows pass through ``jax.jit`` and ``lax.scan`` like any array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp

from mtl_core.labels import canonical_labels
from mtl_core.sparse import PaddedRows, pad_rows
from mtl_core.tasks import TaskSpec

jax.tree_util.register_dataclass(PaddedRows, data_fields=["indices", "values"], meta_fields=["num_features"])


def feature_count(x) -> int:
    return x.num_features if isinstance(x, PaddedRows) else x.shape[-1]


def row_count(x) -> int:
    return x.indices.shape[-2] if isinstance(x, PaddedRows) else x.shape[-2]


def as_network_input(x) -> "jax.Array | PaddedRows":
    """A dense array (n, input_dim) or PaddedRows of jax arrays; scipy sparse input is padded."""
    if sp.issparse(x):
        x = pad_rows(x)
    if isinstance(x, PaddedRows):
        return PaddedRows(jnp.asarray(x.indices, jnp.int32), jnp.asarray(x.values), x.num_features)
    if isinstance(x, (np.ndarray, jax.Array)):
        if x.ndim != 2:
            raise ValueError(f"input must have shape (n, input_dim), got {x.shape}")
        if not (jnp.issubdtype(x.dtype, jnp.number) or x.dtype == bool) or jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"input must hold real numbers, got dtype {x.dtype}")
        return jnp.asarray(x)
    raise TypeError(
        f"input must be a jax or numpy array, a scipy sparse matrix or mtl_core PaddedRows, got {type(x).__name__}"
    )


def as_labels(y, spec: TaskSpec) -> jax.Array:
    """Canonical labels (see mtl_core.labels) as a jax array, after checking them."""
    return jnp.asarray(canonical_labels(np.asarray(y), spec))


def row_bounds(inputs: list) -> list[int]:
    """Where each input's rows start in their concatenation, after the first (for ``jnp.split``)."""
    sizes = [row_count(x) for x in inputs]
    return [sum(sizes[:i]) for i in range(1, len(sizes))]


def concat_rows(inputs: list) -> "jax.Array | PaddedRows | None":
    """Stack several batches' rows into one input (None when dense and sparse are mixed)."""
    if all(isinstance(x, PaddedRows) for x in inputs):
        width = max(x.indices.shape[-1] for x in inputs)
        pad = lambda a: jnp.pad(a, ((0, 0), (0, width - a.shape[-1])))  # noqa: E731 - padding adds zeros
        return PaddedRows(
            jnp.concatenate([pad(x.indices) for x in inputs]),
            jnp.concatenate([pad(x.values) for x in inputs]),
            inputs[0].num_features,
        )
    if not any(isinstance(x, PaddedRows) for x in inputs):
        return jnp.concatenate(inputs)
    return None


def pad_leading(tree, rows: int, axis: int = 0):
    """Zero-pad every array of ``tree`` along ``axis`` to ``rows`` (empty rows, mask 0)."""

    def pad(leaf):
        leaf = np.asarray(leaf)
        widths = [(0, 0)] * leaf.ndim
        widths[axis] = (0, rows - leaf.shape[axis])
        return np.pad(leaf, widths)

    return jax.tree_util.tree_map(pad, tree)
