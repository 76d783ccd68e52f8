"""Per-task gradients on the shared trunk, their Gramian, and the aggregated update: the jax twin of
torch_ref.jacobian, whose docstring gives the steps and why the first layer's per-task gradients
are never formed. Each task's pass through the layers after the first is a ``jax.vjp`` on its own
rows; under a mesh, XLA's partitioner reduces every task's quantities over the "data" axis before
the Gramian is formed, so every device aggregates the global Jacobian.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from mtl_core.sparse import PaddedRows
from jax_impl.aggregate import gramian_weights
from jax_impl.array_ops import JAX_OPS
from jax_impl.inputs import concat_rows, row_bounds
from jax_impl.layers import Linear, bag_of_words
from jax_impl.losses import task_loss
from jax_impl.model import ACTIVATION_FUNCTIONS, MultiTaskNetwork
from jax_impl.state import WEIGHTING


def first_layer(module: MultiTaskNetwork, layer, x) -> jax.Array:
    """The first trunk layer's pre-activation (n, hidden_dims[0])."""
    return Linear(module.hidden_dims[0]).apply({"params": layer}, x)


def later_layers(module: MultiTaskNetwork, layers: list, first: jax.Array) -> jax.Array:
    """The trunk's output from the first layer's pre-activation: the activation, then the other layers."""
    act = ACTIVATION_FUNCTIONS[module.activation]
    z = act(first)
    for width, layer in zip(module.hidden_dims[1:], layers):
        z = act(Linear(width).apply({"params": layer}, z))
    return z


def head_loss(module: MultiTaskNetwork, index: int, y, mask, z, head) -> jax.Array:
    name = module.tasks[index].name
    logits = module.apply({"params": {"heads": {name: head}}}, z, index, method=MultiTaskNetwork.head)
    return task_loss(module.tasks[index], logits, y, mask)


def _transposed(x, dtype) -> jax.Array:
    """x (n, V) as a dense (V, n) matrix; sparse rows are scattered into it."""
    if not isinstance(x, PaddedRows):
        return x.astype(dtype).T
    rows = jnp.broadcast_to(jnp.arange(x.indices.shape[0])[:, None], x.indices.shape)
    return jnp.zeros((x.num_features, x.indices.shape[0]), dtype).at[x.indices, rows].add(x.values.astype(dtype))


def _times(x, matrix: jax.Array) -> jax.Array:
    """x (n, V) @ matrix (V, k); sparse rows gather matrix's rows."""
    if not isinstance(x, PaddedRows):
        return x.astype(matrix.dtype) @ matrix
    return bag_of_words(matrix, x.indices, x.values)


def uses_row_kernel(aggregator) -> bool:
    """Whether the aggregated step needs K = X Xᵀ of its rows (every method but MGDA-UB)."""
    return aggregator is not None and not getattr(aggregator, "representation", False)


def row_kernel(inputs: list, dtype) -> jax.Array:
    """K = X Xᵀ (N, N) of the present tasks' rows stacked, on the device, for dense and sparse rows
    alike. A gather of (N, width, N): the hosts's sparse product (mtl_core.sparse.row_kernel, passed
    in the plan) is far cheaper on a CPU, so the step uses this only when the plan has no K."""
    stacked = jnp.concatenate([_transposed(x, dtype) for x in inputs], axis=1)  # (V, N)
    return jnp.concatenate([_times(x, stacked) for x in inputs])


def _gramian(rows: list) -> jax.Array:
    """G (n, n) of n gradient trees of small arrays: per leaf, the stacked rows times their transpose."""
    gramian = 0.0
    for leaves in zip(*(jax.tree_util.tree_leaves(row) for row in rows)):
        stacked = jnp.stack([leaf.reshape(-1) for leaf in leaves])  # (n, leaf size)
        gramian = gramian + stacked @ stacked.T
    return gramian


def _weighted_sum(weights, trees: list):
    return jax.tree_util.tree_map(lambda *leaves: sum(w * leaf for w, leaf in zip(weights, leaves)), *trees)


def first_layer_vjps(module, layer, inputs: list):
    """(pre-activations per task, vjp of the layer given every task's cotangent): one pass over all
    the rows when the inputs stack, so that the kernel's gradient is one scatter."""
    stacked = concat_rows(inputs)
    if stacked is None:  # dense and sparse batches mixed: one pass per task
        outputs, vjps = zip(*(jax.vjp(lambda p, x=x: first_layer(module, p, x), layer) for x in inputs))
        return list(outputs), lambda cotangents: jax.tree_util.tree_map(lambda *g: sum(g), *(v(c)[0] for v, c in zip(vjps, cotangents)))
    output, vjp = jax.vjp(lambda p: first_layer(module, p, stacked), layer)
    return jnp.split(output, row_bounds(inputs)), lambda cotangents: vjp(jnp.concatenate(cotangents))[0]


def aggregated_gradients(spec, params, batches: dict, plan, weighting_state: dict, first_layer_vjps=first_layer_vjps):
    """(total, {task: loss}, gradient tree shaped like params, solver residual) of one aggregated step.

    ``first_layer_vjps`` builds the first layer's outputs and vjp; jax_impl.lazy's gives the kernel's
    gradient as the touched rows' (RowGradients) instead of a dense (V, H) array.
    """
    module = spec.module
    present = spec.present(batches)  # [(name, model index)] in model order: the rows of J
    trunk, heads = params["params"]["trunk"], params["params"]["heads"]
    later = [trunk[str(i)] for i in range(1, len(module.hidden_dims))]
    inputs = [batches[name][0] for name, _ in present]
    firsts, first_vjp = first_layer_vjps(module, trunk["0"], inputs)
    losses, vjps, dz, dheads = [], [], [], []
    for (name, index), first in zip(present, firsts):
        _, y, mask = batches[name]
        z, vjp = jax.vjp(functools.partial(later_layers, module), later, first)
        loss, (g_z, g_head) = jax.value_and_grad(functools.partial(head_loss, module, index, y, mask), argnums=(0, 1))(z, heads[name])
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
        later_grads, deltas = zip(*(vjp(w * a * g) for vjp, w, a, g in zip(vjps, weights, scales, dz)))
        later_grad = _weighted_sum([1.0] * len(present), list(later_grads))
    else:
        later_grads, deltas = zip(*(vjp(a * g) for vjp, a, g in zip(vjps, scales, dz)))
        # The first layer's rows of J are X_iᵀ Δ_i (Δ_i: the task's gradient at the layer's output), whose
        # inner products are the blocks of sum(K ⊙ ΔΔᵀ) with K = X Xᵀ: no (V, H) gradient per task.
        delta = jnp.concatenate(deltas)  # (N, hidden_dims[0])
        sizes = [d.shape[0] for d in deltas]
        owner = jnp.repeat(jnp.eye(len(present), dtype=delta.dtype), jnp.array(sizes), axis=0, total_repeat_length=sum(sizes))  # (N, n)
        kernel = row_kernel(inputs, delta.dtype) if plan.row_kernel is None else plan.row_kernel.astype(delta.dtype)
        kernel_part = owner.T @ (kernel * (delta @ delta.T)) @ owner
        bias_rows = owner.T @ delta  # (n, hidden_dims[0]): the first layer's bias gradient of each task
        gramian = kernel_part + bias_rows @ bias_rows.T + _gramian(list(later_grads))
        weights, residual = gramian_weights(gramian, spec.aggregator, plan.order)
        later_grad = _weighted_sum(weights, list(later_grads))
        deltas = [w * d for w, d in zip(weights, deltas)]
    first_grad = first_vjp(list(deltas))
    trunk_grad = {"0": first_grad, **{str(i + 1): g for i, g in enumerate(later_grad)}}
    own = {name: jax.tree_util.tree_map(lambda g, a=a: a * g, g_head) for (name, _), a, g_head in zip(present, scales, dheads)}
    head_grads = {name: own.get(name, jax.tree_util.tree_map(jnp.zeros_like, head)) for name, head in heads.items()}
    grads = {"params": {"trunk": trunk_grad, "heads": head_grads}}
    if log_var is not None:
        grads[WEIGHTING] = {"log_var": d_log_var}
    return total, dict(zip((name for name, _ in present), losses)), grads, residual
