"""Lazy Adam's step on the first layer's kernel: the touched rows' gradients and their update.

With ``jax_impl.lazy_adam`` a step never forms the kernel's (V, H) gradient Xᵀ Δ. It differentiates
the loss with respect to the first layer's output instead (Δ, (N, H), the kernel held constant)
and sums each touched row's share of Xᵀ Δ over the step's non-zero entries (RowGradients). The
kernel sits in an optimiser group of its own ("rows", jax_impl.state) with Adam's state; the step
runs the grouped optax update with a zero placeholder for the kernel's gradient, then replaces the
kernel and its moments by mtl_core.lazy_adam's update of the touched rows, gathered and scattered.
The placeholder's dense update is dead code once replaced, and XLA drops it: a step's cost follows
its batches' non-zeros, not V.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from optax import ScaleByAdamState

from mtl_core.lazy_adam import row_update
from mtl_core.sparse import PaddedRows
from jax_impl.array_ops import JAX_OPS
from jax_impl.inputs import concat_rows, row_bounds
from jax_impl.jacobian import first_layer, head_loss, later_layers
from jax_impl.optimizer import adam_states
from jax_impl.state import ROWS, WEIGHTING


class RowGradients(NamedTuple):
    """The first layer kernel's gradient on the rows a step touches, each row once."""

    rows: jax.Array  # (E,) int32 kernel rows; V (num_features, out of range) in unused slots
    grads: jax.Array  # (E, H) each row's summed gradient; 0 in unused slots


def check_sparse(batches: dict) -> None:
    """Refuse dense input: lazy Adam finds the touched rows from the sparse rows' non-zeros."""
    dense = [name for name, (x, *_) in batches.items() if not isinstance(x, PaddedRows)]
    if dense:
        raise ValueError(
            f"jax_impl.lazy_adam needs sparse input (a scipy sparse matrix or mtl_core PaddedRows) to find the "
            f"first-layer rows a step touches, got dense arrays for tasks {dense}: pass sparse rows, or use jax_impl.adam"
        )


def with_kernel(tree: dict, kernel):
    """``tree`` (params, or a tree shaped like them) with the first layer's kernel replaced."""
    outer = tree["params"]
    trunk = outer["trunk"]
    return {**tree, "params": {**outer, "trunk": {**trunk, "0": {**trunk["0"], "kernel": kernel}}}}


def kernel_of(tree: dict):
    return tree["params"]["trunk"]["0"]["kernel"]


def row_gradients(x: PaddedRows, delta: jax.Array) -> RowGradients:
    """Xᵀ Δ on the rows X touches: x the step's rows (N, W), delta (N, H) the gradient at X W + b.

    The N·W entries' distinct columns (value-0 entries, padding or stored zeros, count as column V:
    they touch nothing) are found by sorting the column ids alone, each entry's slot among them by
    binary search, and the entries are summed per slot; E = N·W bounds the touched rows statically.
    (A sort that carried the entries' positions along would cost several times more on a CPU.)
    """
    size, width = x.indices.size, x.indices.shape[-1]
    values = x.values.reshape(-1)
    columns = jnp.where(values != 0, x.indices.reshape(-1), x.num_features)  # (E,)
    ordered = jnp.sort(columns)
    starts = jnp.concatenate([jnp.ones(1, bool), ordered[1:] != ordered[:-1]])
    rows = jnp.full(size, x.num_features, columns.dtype).at[jnp.cumsum(starts) - 1].set(ordered)  # distinct, ascending, then V
    slots = jnp.searchsorted(rows, columns)  # (E,) each entry's row slot
    contributions = values[:, None].astype(delta.dtype) * jnp.repeat(delta, width, axis=0)  # (E, H)
    return RowGradients(rows, jax.ops.segment_sum(contributions, slots, num_segments=size))


def first_layer_rows(module, layer: dict, inputs: list):
    """(pre-activations per task, vjp of the layer given every task's cotangent), as jax_impl.jacobian's
    first-layer vjps, but the vjp gives the kernel's gradient as RowGradients."""
    x = concat_rows(inputs)
    kernel = layer["kernel"]
    output, bias_vjp = jax.vjp(lambda bias: first_layer(module, {"kernel": kernel, "bias": bias}, x), layer["bias"])

    def vjp(cotangents: list) -> dict:
        delta = jnp.concatenate(cotangents)  # (N, H)
        return {"kernel": row_gradients(x, delta), "bias": bias_vjp(delta)[0]}

    return jnp.split(output, row_bounds(inputs)), vjp


def summed_gradients(spec, params, batches: dict, plan, weighting_state: dict):
    """(total, {task: loss}, gradients, residual 0) of the summed step; the kernel's are RowGradients.

    The weighting's total is differentiated with respect to the first layer's output and every
    parameter but that layer's; its vjp gives the layer's own gradients.
    """
    module = spec.module
    present = spec.present(batches)
    inputs = [batches[name][0] for name, _ in present]
    trunk = params["params"]["trunk"]
    firsts, first_vjp = first_layer_rows(module, trunk["0"], inputs)
    rest = {**params, "params": {**params["params"], "trunk": {k: v for k, v in trunk.items() if k != "0"}}}

    def objective(rest, firsts):
        layers, heads = rest["params"]["trunk"], rest["params"]["heads"]
        z = later_layers(module, [layers[str(i)] for i in range(1, len(module.hidden_dims))], jnp.concatenate(firsts))
        features = jnp.split(z, row_bounds(inputs))
        losses = jnp.stack([head_loss(module, index, *batches[name][1:], z_t, heads[name]) for (name, index), z_t in zip(present, features)])
        log_var = rest.get(WEIGHTING, {}).get("log_var")
        objectives = spec.weighting.objectives(JAX_OPS, losses, [i for _, i in present], plan.task_weights, weighting_state, log_var)
        return jnp.sum(objectives), losses

    (total, losses), (grads, deltas) = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(rest, firsts)
    grads = {**grads, "params": {**grads["params"], "trunk": {"0": first_vjp(deltas), **grads["params"]["trunk"]}}}
    return total, dict(zip((name for name, _ in present), losses)), grads, jnp.zeros((), total.dtype)


def update_rows(old_params, old_opt_state, params, opt_state, rows: RowGradients):
    """``params`` and ``opt_state`` (after the grouped update) with the kernel and its moments given lazy
    Adam's update of the touched rows, from their values before the step (``old_*``).

    The rows group's count, incremented by that update, is the t of mtl_core.lazy_adam; its
    hyper-parameters are the group state's own.
    """
    ((adam, hyper),) = adam_states(opt_state.inner_states[ROWS], as_numbers=False)
    ((old_adam, _),) = adam_states(old_opt_state.inner_states[ROWS], as_numbers=False)
    arrays = (kernel_of(old_params), kernel_of(old_adam.mu), kernel_of(old_adam.nu))  # each (V, H)
    touched = [a.at[rows.rows].get(mode="fill", fill_value=0) for a in arrays]  # unused slots read 0
    moved = row_update(jnp, *touched, rows.grads, adam.count, hyper)
    kernel, mu, nu = (a.at[rows.rows].set(b, mode="drop") for a, b in zip(arrays, moved))  # unused slots write nothing
    adam = adam._replace(mu=with_kernel(adam.mu, mu), nu=with_kernel(adam.nu, nu))
    is_adam = lambda node: isinstance(node, ScaleByAdamState)  # noqa: E731
    group = jax.tree_util.tree_map(lambda node: adam if is_adam(node) else node, opt_state.inner_states[ROWS], is_leaf=is_adam)
    return with_kernel(params, kernel), opt_state._replace(inner_states={**opt_state.inner_states, ROWS: group})
