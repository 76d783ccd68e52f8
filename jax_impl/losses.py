"""Per-task losses: the mean over a batch's (unmasked) rows, as in torch_ref."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mtl_core.tasks import TaskSpec


def example_losses(spec: TaskSpec, logits: jax.Array, y: jax.Array) -> jax.Array:
    """Loss of each row (n,): BCE-with-logits, cross-entropy or squared error, mean over outputs."""
    if spec.kind == "multiclass":
        # -log_softmax at the label, as torch's cross_entropy: optax's logsumexp(logits) - logit
        # rounds at the logits' scale (6e-5 at 1000 in float32), not at the loss's.
        return -jnp.take_along_axis(jax.nn.log_softmax(logits), y[:, None].astype(jnp.int32), axis=1)[:, 0]
    y = y.astype(logits.dtype)
    if spec.kind == "regression":
        return jnp.mean((logits - y) ** 2, axis=1)
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, y), axis=1)


def task_loss(spec: TaskSpec, logits: jax.Array, y: jax.Array, mask: jax.Array) -> jax.Array:
    """The mean loss over the rows whose 0/1 ``mask`` is 1 (padding rows have 0)."""
    losses = example_losses(spec, logits, y)
    mask = mask.astype(losses.dtype)
    return jnp.sum(losses * mask) / jnp.sum(mask)
