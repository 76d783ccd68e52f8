"""Per-task gradients on the shared trunk, their Gramian, and the aggregated update: the jax twin of
torch_ref.jacobian, whose docstring gives the four steps. Here each task's trunk pass is a
``jax.vjp`` on its own batch, so its row of the Jacobian costs one backward over its own rows;
under a mesh, XLA's partitioner reduces every task's gradient over the "data" axis before the
Gramian is formed, so every device aggregates the global Jacobian.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jax_impl.aggregate import gramian_weights
from jax_impl.array_ops import JAX_OPS
from jax_impl.losses import task_loss
from jax_impl.model import MultiTaskNetwork
from jax_impl.state import WEIGHTING


def _features(module: MultiTaskNetwork, trunk, x) -> jax.Array:
    return module.apply({"params": {"trunk": trunk}}, x, method=MultiTaskNetwork.features)


def _head_loss(module: MultiTaskNetwork, index: int, y, mask, z, head) -> jax.Array:
    name = module.tasks[index].name
    logits = module.apply({"params": {"heads": {name: head}}}, z, index, method=MultiTaskNetwork.head)
    return task_loss(module.tasks[index], logits, y, mask)


def _gramian(rows: list) -> jax.Array:
    """G (n, n) of n gradient trees: the sum over leaves of each leaf's stacked rows times their transpose."""
    gramian = 0.0
    for leaves in zip(*(jax.tree_util.tree_leaves(row) for row in rows)):
        stacked = jnp.stack([leaf.reshape(-1) for leaf in leaves])  # (n, leaf size)
        gramian = gramian + stacked @ stacked.T
    return gramian


def _sum(trees: list):
    return jax.tree_util.tree_map(lambda *leaves: sum(leaves), *trees)


def aggregated_gradients(spec, params, batches: dict, plan, weighting_state: dict):
    """(total, {task: loss}, gradient tree shaped like params, solver residual) of one aggregated step."""
    module = spec.module
    present = spec.present(batches)  # [(name, model index)] in model order: the rows of J
    trunk, heads = params["params"]["trunk"], params["params"]["heads"]
    losses, vjps, dz, dheads = [], [], [], []
    for name, index in present:
        x, y, mask = batches[name]
        z, vjp = jax.vjp(lambda t, x=x: _features(module, t, x), trunk)
        loss, (g_z, g_head) = jax.value_and_grad(functools.partial(_head_loss, module, index, y, mask), argnums=(0, 1))(z, heads[name])
        losses.append(loss)
        vjps.append(vjp)
        dz.append(g_z)
        dheads.append(g_head)
    losses = jnp.stack(losses)
    indices = [index for _, index in present]
    log_var = params.get(WEIGHTING, {}).get("log_var")

    def objective_sum(losses, log_var):
        return jnp.sum(spec.weighting.objectives(JAX_OPS, losses, indices, plan.task_weights, weighting_state, log_var))

    total, (scales, d_log_var) = jax.value_and_grad(objective_sum, argnums=(0, 1))(losses, log_var)
    if getattr(spec.aggregator, "representation", False):
        gramian = jnp.diag(jnp.stack([jnp.sum(jnp.square(a * g)) for a, g in zip(scales, dz)]))
        weights, residual = gramian_weights(gramian, spec.aggregator, plan.order)
        trunk_grad = _sum([vjp(w * a * g)[0] for vjp, w, a, g in zip(vjps, weights, scales, dz)])
    else:
        rows = [vjp(a * g)[0] for vjp, a, g in zip(vjps, scales, dz)]
        weights, residual = gramian_weights(_gramian(rows), spec.aggregator, plan.order)
        trunk_grad = _sum([jax.tree_util.tree_map(lambda leaf, w=w: w * leaf, row) for w, row in zip(weights, rows)])
    own = {name: jax.tree_util.tree_map(lambda g, a=a: a * g, g_head) for (name, _), a, g_head in zip(present, scales, dheads)}
    head_grads = {name: own.get(name, jax.tree_util.tree_map(jnp.zeros_like, head)) for name, head in heads.items()}
    grads = {"params": {"trunk": trunk_grad, "heads": head_grads}}
    if log_var is not None:
        grads[WEIGHTING] = {"log_var": d_log_var}
    return total, dict(zip((name for name, _ in present), losses)), grads, residual
