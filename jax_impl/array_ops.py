"""``JAX_OPS``: the shared maths' array operations in JAX, jittable (loops are ``lax`` loops)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mtl_core.array_ops import ArrayOps

JAX_OPS = ArrayOps(
    xp=jnp,
    asarray=lambda values, like: jnp.asarray(values, dtype=like.dtype),
    eye=lambda n, like: jnp.eye(n, dtype=like.dtype),
    solve=jnp.linalg.solve,  # LU without pivot checks: a singular system gives inf/NaN, never raises
    stop_gradient=jax.lax.stop_gradient,
    while_loop=jax.lax.while_loop,
    fori_loop=jax.lax.fori_loop,
)
