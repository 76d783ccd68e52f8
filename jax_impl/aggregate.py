"""Gradient aggregation in JAX: the maths is mtl_core.aggregation's, run by JAX_OPS (jittable).

Jit it where it is called, the aggregator static: ``jax.jit(aggregate, static_argnames="aggregator")``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtl_core.aggregation import check_inputs, check_order
from jax_impl.array_ops import JAX_OPS


def gramian_weights(gramian, aggregator, order=None) -> tuple[jax.Array, jax.Array]:
    """(weights (T,), residual ()) of ``aggregator`` (an Aggregator or its name) for a Gramian (T, T).

    The weights are constants (stop_gradient); ``residual > aggregator.tol`` means the solver did not
    converge (NaN: the Gramian was not finite). order: PCGrad's (T, T-1) integer task order, else None;
    a traced order is checked for shape and dtype only.
    """
    gramian = jnp.asarray(gramian)
    aggregator = check_inputs(aggregator, gramian.shape, gramian.dtype.name, "gramian")
    if isinstance(order, jax.core.Tracer):
        if not jnp.issubdtype(order.dtype, jnp.integer):
            raise TypeError(f"the pcgrad order must hold integers, got dtype {order.dtype}")
    elif order is not None:
        order = np.asarray(order)  # a constant of the traced program
        check_order(order, gramian.shape[0])
    with jax.default_matmul_precision("highest"):  # no TF32 / bf16 passes on accelerators
        return aggregator.weights(gramian, JAX_OPS, order)


def aggregate(jacobian, aggregator, order=None) -> jax.Array:
    """The direction d = wᵀJ (P,) of the rows of ``jacobian`` (T, P); differentiable in J, w held constant."""
    jacobian = jnp.asarray(jacobian)
    check_inputs(aggregator, jacobian.shape, jacobian.dtype.name, "jacobian")
    with jax.default_matmul_precision("highest"):
        weights, _ = gramian_weights(jacobian @ jacobian.T, aggregator, order)
        return weights @ jacobian
