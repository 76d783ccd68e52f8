"""Data-parallel (and optionally trunk-parallel) placement on a ``jax.sharding.Mesh``.

XLA's SPMD partitioner does the distributed work: batches are sharded by rows over the mesh's
"data" axis, params and optimiser state are replicated (the trunk's kernels are sharded over a
"model" axis when the mesh has one), and the gradient all-reduce follows from those placements.
Every array is built with ``jax.make_array_from_callback``, so the same code serves one process
or many (after ``jax.distributed.initialize``), each process supplying the rows it holds.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA, MODEL = "data", "model"


def check_mesh(mesh) -> Mesh:
    """The mesh with Auto axes (SPMD propagation), after checking it has a "data" axis."""
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if DATA not in mesh.axis_names:
        raise ValueError(f"mesh must have a {DATA!r} axis to shard batches over, got axes {mesh.axis_names}")
    unknown = [a for a in mesh.axis_names if a not in (DATA, MODEL)]
    if unknown:
        raise ValueError(f"mesh axes must be {DATA!r} and optionally {MODEL!r}, got {mesh.axis_names}")
    # Explicit axes (jax.make_mesh's default in recent releases) would make every op state its
    # output sharding; the step is written for the partitioner to propagate them.
    return Mesh(mesh.devices, mesh.axis_names, axis_types=(AxisType.Auto,) * len(mesh.axis_names))


def data_parallelism(mesh: Mesh | None) -> int:
    return 1 if mesh is None else mesh.shape[DATA]


def padded_rows(n: int, mesh: Mesh | None) -> int:
    """The row count a batch of n rows is padded to, so that it splits evenly over "data"."""
    d = data_parallelism(mesh)
    return math.ceil(n / d) * d


def _global_array(value, sharding: NamedSharding) -> jax.Array:
    if isinstance(value, jax.Array) and value.sharding == sharding:
        return value
    host = np.asarray(value) if not isinstance(value, jax.Array) or value.is_fully_addressable else host_copy(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def param_sharding(mesh: Mesh, path) -> NamedSharding:
    """Replicated, except trunk kernels (in, out) split by output column over a "model" axis.

    ``path`` is a key path into params or into an optimiser state, whose moments repeat the
    params' keys ("params", "trunk", i, "kernel") below the optimiser's own.
    """
    keys = [str(entry.key) for entry in path if isinstance(entry, jax.tree_util.DictKey)]
    at = keys.index("params") if "params" in keys else -1
    if MODEL in mesh.axis_names and at >= 0 and keys[at + 1 : at + 2] == ["trunk"] and keys[-1] == "kernel":
        return NamedSharding(mesh, P(None, MODEL))
    return NamedSharding(mesh, P())


def place_params(tree, mesh: Mesh):
    """Params (or any params-shaped tree) as global arrays placed by ``param_sharding``."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: _global_array(leaf, param_sharding(mesh, path)), tree)


def place_rows(tree, mesh: Mesh, row_axis: int = 0):
    """Batch arrays as global arrays split by rows (axis ``row_axis``) over the "data" axis."""
    spec = P(*([None] * row_axis), DATA)
    return jax.tree_util.tree_map(lambda leaf: _global_array(leaf, NamedSharding(mesh, spec)), tree)


def host_copy(value) -> np.ndarray:
    """A numpy copy of a (possibly multi-process) array, the same on every process."""
    if value.is_fully_addressable:
        return np.asarray(value)
    return np.asarray(multihost_utils.process_allgather(value, tiled=True))


def constrain_params(tree, mesh: Mesh):
    """Keep a params-shaped result where ``place_params`` put its input (inside jit)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jax.lax.with_sharding_constraint(leaf, param_sharding(mesh, path)), tree
    )


def place_state(opt_state, mesh: Mesh):
    """Optimiser state placed like the params its moments shadow; counts and the like replicated."""
    return place_params(opt_state, mesh)
