"""Per-task losses (mean over a batch's rows) and their weighted combination, as in torch_ref."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mtl_core.tasks import TaskSpec
from mtl_core.weighting import Weighting


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


def combine_losses(
    weighting: Weighting,
    losses: list[jax.Array],
    task_indices: list[int],
    task_weights: jax.Array,
    log_variances: jax.Array | None,
) -> jax.Array:
    """The one loss to back-propagate, from the losses of the tasks present (see mtl_core.weighting)."""
    stacked = jnp.stack(losses)
    index = jnp.array(task_indices)
    if weighting.learnable:
        s = log_variances[index]
        return jnp.sum(jnp.exp(-s) * stacked + s)
    weights = task_weights[index].astype(stacked.dtype)
    if weighting.name == "mean":
        weights = weights / len(task_indices)
    return jnp.sum(weights * stacked)
