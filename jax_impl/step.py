"""One pure training step: every task's loss, the weighting's objectives, one grouped optax update.

``train_step(spec, state, batches, plan) -> (state, metrics)`` is a plain function of arrays and a
static, hashable ``StepSpec``: a test can run it without jit. ``make_train_step`` jits it (the state
donated) behind the input checks, and ``fit`` scans it over runs of steps (jax_impl.train). With
``jax_impl.lazy_adam`` the first layer's kernel gets its touched rows' update (jax_impl.lazy).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl_core.aggregation import Aggregator, resolve_aggregator
from mtl_core.batches import check_batches
from mtl_core.sparse import PaddedRows, row_kernel
from mtl_core.plans import draw_step, needs_key
from mtl_core.tasks import SOLVER_RESIDUAL, TOTAL, check_step_report
from mtl_core.weighting import Weighting, check_task_weights, resolve_weighting
from jax_impl.array_ops import JAX_OPS
from jax_impl.inputs import as_network_input, pad_leading, row_count
from jax_impl.jacobian import aggregated_gradients, first_layer_vjps, uses_row_kernel
from jax_impl.lazy import check_sparse, first_layer_rows, kernel_of, summed_gradients, update_rows, with_kernel
from jax_impl.losses import task_loss
from jax_impl.model import MultiTaskNetwork
from jax_impl.sharding import check_mesh, constrain_params, host_copy, padded_rows, place_params, place_rows, place_state
from jax_impl.state import (
    ROWS,
    WEIGHTING,
    TrainState,
    check_params,
    group_labels,
    grouped,
    grouped_opt_state,
    is_lazy,
    weighting_state,
    with_weighting_params,
)

# A checked batch dict: {task name: (network input, labels, 0/1 row mask)}. Inside jit its keys come
# in pytree (sorted) order, not the model's: code that reports per task keys by name or model order.
Batches = dict


@dataclass(frozen=True)
class StepSpec:
    """What a step is, as opposed to what it works on: hashable, the static argument of jit."""

    module: MultiTaskNetwork
    tx: optax.GradientTransformation  # applied to each parameter group on its own (jax_impl.state)
    weighting: Weighting  # bound to the module's tasks
    mesh: Any = None  # a jax.sharding.Mesh with a "data" axis, or None
    aggregator: Aggregator | None = None  # None: the summed step; else per-task gradients (jax_impl.jacobian)
    # tx is jax_impl.lazy_adam. A field of its own, so that the spec's hash and equality (jit's cache
    # key) tell a lazy step from a dense one even where tx compares equal as a tuple (init, update).
    lazy: bool = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "lazy", is_lazy(self.tx))

    @functools.cached_property
    def grouped_tx(self) -> optax.GradientTransformation:
        return grouped(self.tx, self.module.tasks, self.weighting)

    def present(self, batches: Batches) -> list[tuple[str, int]]:
        """(name, model position) of the tasks in ``batches``, in the model's order."""
        return [(t.name, i) for i, t in enumerate(self.module.tasks) if t.name in batches]


class StepPlan(NamedTuple):
    """What the host decides for one step (mtl_core.plans; arrays, so that a scan carries one per step)."""

    task_weights: jax.Array  # (T,) the loss weights c_t of this step (see mtl_core.weighting)
    record_norms: jax.Array  # () bool: compute the layers' gradient norms
    order: jax.Array | None = None  # (n, n - 1) int32: PCGrad's projection order of the n present tasks
    row_kernel: jax.Array | None = None  # (N, N) X Xᵀ of the step's rows (jax_impl.jacobian); None: computed on the device


class StepMetrics(NamedTuple):
    losses: dict  # {task name: () mean loss of its batch before the update}
    total: jax.Array  # () the sum of the weighting's objectives: what the summed step differentiates
    grad_norms: jax.Array  # (trunk layers + present heads,) L2 norm of each layer's gradient; 0 unless recorded
    residual: jax.Array  # () the aggregator's solver residual (> aggregator.tol: not converged); 0 without one


def task_losses(spec: StepSpec, params, batches: Batches) -> jax.Array:
    """Each present task's mean loss (n,), in model order, from one trunk pass over all the step's rows."""
    names, indices = zip(*spec.present(batches))
    all_logits = spec.module.apply(
        {"params": params["params"]}, [batches[n][0] for n in names], indices, method=MultiTaskNetwork.forward_tasks
    )
    return jnp.stack([task_loss(spec.module.tasks[i], out, batches[n][1], batches[n][2]) for i, n, out in zip(indices, names, all_logits)])


def loss_fn(spec: StepSpec, params, batches: Batches, task_weights: jax.Array, weighting: dict):
    """(total, {task: loss}): the sum of the weighting's objectives, and each task's mean loss."""
    losses = task_losses(spec, params, batches)
    present = spec.present(batches)
    log_var = params.get(WEIGHTING, {}).get("log_var")
    objectives = spec.weighting.objectives(JAX_OPS, losses, [i for _, i in present], task_weights, weighting, log_var)
    return jnp.sum(objectives), dict(zip((name for name, _ in present), losses))


def _host_rows(x):
    """A step's input rows as numpy (for mtl_core.sparse.row_kernel), also from a mesh's global arrays."""
    if isinstance(x, PaddedRows):
        return PaddedRows(host_copy(x.indices), host_copy(x.values), x.num_features)
    return host_copy(x)


def _network_input(x):
    x = as_network_input(x)
    return x, row_count(x)


def _global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


def layer_norms(spec: StepSpec, grads, batches: Batches) -> jax.Array:
    """Gradient norm of each trunk layer, then of each present head (model order)."""
    tree = grads["params"]
    trunk = [_global_norm(tree["trunk"][str(i)]) for i in range(len(spec.module.hidden_dims))]
    heads = [_global_norm(tree["heads"][t.name]) for t in spec.module.tasks if t.name in batches]  # model order
    return jnp.stack(trunk + heads)


def apply_gradients(spec: StepSpec, state: TrainState, grads, batches: Batches) -> tuple[dict, Any]:
    """One optax update; groups without a gradient in this step (absent heads) keep params and state."""
    present = {ROWS, "trunk", WEIGHTING} | {f"heads.{name}" for name in batches}
    updates, new_state = spec.grouped_tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    labels = group_labels(state.params, spec.lazy)
    params = jax.tree_util.tree_map(lambda new, old, g: new if g in present else old, new_params, state.params, labels)
    inner = {g: s if g in present else state.opt_state.inner_states[g] for g, s in new_state.inner_states.items()}
    if spec.mesh is not None:
        params = constrain_params(params, spec.mesh)
    return params, new_state._replace(inner_states=inner)


def train_step(spec: StepSpec, state: TrainState, batches: Batches, plan: StepPlan) -> tuple[TrainState, StepMetrics]:
    """One step on ``batches`` ({task: (x, y, row mask)}, any subset of the tasks)."""
    if spec.lazy:
        check_sparse(batches)
    if spec.aggregator is None and not spec.lazy:
        loss = functools.partial(loss_fn, spec)
        (total, losses), grads = jax.value_and_grad(loss, has_aux=True)(state.params, batches, plan.task_weights, state.weighting)
        residual = jnp.zeros((), total.dtype)
    elif spec.aggregator is None:
        total, losses, grads, residual = summed_gradients(spec, state.params, batches, plan, state.weighting)
    else:
        first_layer = first_layer_rows if spec.lazy else first_layer_vjps
        total, losses, grads, residual = aggregated_gradients(spec, state.params, batches, plan, state.weighting, first_layer)
    if spec.lazy:  # the kernel's RowGradients: a zero placeholder for the grouped update, their own update after it
        rows = kernel_of(grads)
        params, opt_state = apply_gradients(spec, state, with_kernel(grads, jnp.zeros_like(kernel_of(state.params))), batches)
        params, opt_state = update_rows(state.params, state.opt_state, params, opt_state, rows)
        grads = with_kernel(grads, rows.grads)  # the touched rows' gradients: the dense gradient's norm
    else:
        params, opt_state = apply_gradients(spec, state, grads, batches)
    weighting = state.weighting
    if spec.weighting.stateful:  # e.g. FAMO: compares the losses before and after the update
        before = jnp.stack([losses[name] for name, _ in spec.present(batches)])
        indices = [i for _, i in spec.present(batches)]
        weighting = spec.weighting.update_state(JAX_OPS, weighting, indices, before, task_losses(spec, params, batches))
    zeros = jnp.zeros(len(spec.module.hidden_dims) + len(batches), total.dtype)
    norms = jax.lax.cond(plan.record_norms, lambda g: layer_norms(spec, g, batches), lambda g: zeros, grads)
    metrics = StepMetrics(losses, total, norms, residual.astype(total.dtype))
    return TrainState(params, opt_state, weighting, state.step + 1), metrics


def run_steps(spec: StepSpec, state: TrainState, stacked: Batches, plans: StepPlan, active: jax.Array):
    """``lax.scan`` of ``train_step`` over K stacked batches and plans (one dispatch).

    Steps whose ``active`` flag is False are skipped, so runs of any length up to K share one
    compiled program.
    """
    n_layers = len(spec.module.hidden_dims) + len(stacked)

    def skip(state, batches, plan):
        del batches, plan
        zero = jnp.zeros((), state.params["params"]["trunk"]["0"]["kernel"].dtype)
        return state, StepMetrics({name: zero for name in stacked}, zero, jnp.zeros(n_layers, zero.dtype), zero)

    def body(state, inputs):
        batches, plan, is_active = inputs
        return jax.lax.cond(is_active, functools.partial(train_step, spec), skip, state, batches, plan)

    return jax.lax.scan(body, state, (stacked, plans, active))


# The compiled programs, shared by every TrainStep and fit with an equal spec.
jitted_train_step = jax.jit(train_step, static_argnums=0, donate_argnums=1)
jitted_run_steps = jax.jit(run_steps, static_argnums=0, donate_argnums=1)


class TrainStep:
    """``make_train_step``'s result: the jitted step behind input checks.

    ``step(params, opt_state, batches, task_weights=None) -> (params, opt_state, losses)`` with
    ``losses`` each present task's mean loss and "total"; ``step.init(params)`` gives opt_state (a
    plain ``tx.init(params)`` state is accepted too and split into groups). The state-passing form,
    ``step.apply(state, batches) -> (state, metrics)`` with ``state = step.init_state(params)``,
    also carries the weighting's own state. Everything passed in is donated: invalid afterwards.

    With a ``mesh`` (a "data" axis, optionally a "model" axis) each task's batch is split by rows
    over "data" (padded with masked rows to a multiple of its size: the loss is unchanged), params
    and optimiser state are replicated (trunk kernels split over "model"), and XLA's partitioner
    adds the gradient all-reduce. The result is the single-device one.
    """

    def __init__(self, module: MultiTaskNetwork, tx: optax.GradientTransformation, weighting="sum", mesh=None, aggregator=None):
        if not isinstance(module, MultiTaskNetwork):
            raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        mesh = None if mesh is None else check_mesh(mesh)
        if mesh is not None and is_lazy(tx):
            raise ValueError("jax_impl.lazy_adam does not support a mesh (its row updates are not sharded): use jax_impl.adam")
        weighting = resolve_weighting(weighting, module.tasks)
        self.spec = StepSpec(module, tx, weighting, mesh, resolve_aggregator(aggregator))
        self._checked_structures: set = set()
        self._grouped_structures: dict = {}  # params structure -> the grouped optimiser state's

    @property
    def module(self) -> MultiTaskNetwork:
        return self.spec.module

    @property
    def weighting(self) -> Weighting:
        return self.spec.weighting

    @property
    def aggregator(self) -> Aggregator | None:
        return self.spec.aggregator

    @property
    def mesh(self):
        return self.spec.mesh

    # -- state ---------------------------------------------------------------------------------
    def init_params(self, params) -> dict:
        """``params`` with the loss weighting's learnable state added when it has one."""
        return with_weighting_params(params, self.weighting)

    def init(self, params) -> optax.OptState:
        """The grouped optimiser state for ``params`` (one ``tx`` state per group)."""
        state = self.spec.grouped_tx.init(params)
        return state if self.mesh is None else place_state(state, self.mesh)

    def init_state(self, params, opt_state=None) -> TrainState:
        """A TrainState from params (the weighting's entry added) and, optionally, an optimiser state."""
        params = self.init_params(params)
        self.check_params(params)
        opt_state = self.init(params) if opt_state is None else self.grouped_opt_state(opt_state, params)
        dtype = params["params"]["trunk"]["0"]["kernel"].dtype
        return self.place(TrainState(params, opt_state, weighting_state(self.weighting, dtype), jnp.zeros((), jnp.int32)))

    def with_weighting_state(self, state: TrainState, weighting_state) -> TrainState:
        """``state`` with the weighting's state replaced (checked against its initial one: keys, shapes)."""
        expected, given = state.weighting, dict(weighting_state)
        if given.keys() != expected.keys() or any(np.shape(given[k]) != expected[k].shape for k in expected):
            shapes = {k: v.shape for k, v in expected.items()}
            raise ValueError(f"weighting_state must hold {shapes} for {self.weighting.name} weighting, got {given!r}")
        return self.place(state._replace(weighting={k: jnp.asarray(v, expected[k].dtype) for k, v in given.items()}))

    def place(self, state: TrainState) -> TrainState:
        """The state as global arrays on the mesh; unchanged without a mesh."""
        if self.mesh is None:
            return state
        params, opt_state, weighting, step = state
        return TrainState(place_params(params, self.mesh), place_state(opt_state, self.mesh), place_state(weighting, self.mesh), place_state(step, self.mesh))

    def place_batches(self, batches: Batches, row_axis: int = 0) -> Batches:
        """Batches padded to a multiple of the "data" axis (masked rows) and split over it."""
        if self.mesh is None:
            return batches
        placed = {}
        for name, batch in batches.items():
            rows = padded_rows(row_count(batch[0]) if row_axis == 0 else batch[2].shape[row_axis], self.mesh)
            placed[name] = place_rows(pad_leading(batch, rows, row_axis), self.mesh, row_axis)
        return placed

    def grouped_opt_state(self, opt_state, params):
        """``opt_state`` as the grouped state: as is when it already is one, else split from ``tx.init``'s."""
        key = jax.tree_util.tree_structure(params)
        if key not in self._grouped_structures:
            self._grouped_structures[key] = jax.tree_util.tree_structure(jax.eval_shape(self.spec.grouped_tx.init, params))
        if jax.tree_util.tree_structure(opt_state) == self._grouped_structures[key]:
            return opt_state
        return grouped_opt_state(self.spec.tx, self.spec.grouped_tx, opt_state, params)

    def check_params(self, params) -> None:
        """Check params once per structure (the check walks the whole tree)."""
        structure = jax.tree_util.tree_structure(params), tuple(np.shape(l) for l in jax.tree_util.tree_leaves(params))
        if structure not in self._checked_structures:
            check_params(self.module, self.weighting, params)
            self._checked_structures.add(structure)

    # -- checking the user's input -------------------------------------------------------------
    def prepare(self, batches: Mapping[str, tuple]) -> Batches:
        """Check a batch dict and turn it into jax arrays with a row mask, in model task order."""
        checked = check_batches(batches, self.module.tasks, _network_input)
        return {
            b.spec.name: (b.x, jnp.asarray(b.y), jnp.asarray(np.ones(len(b.y), np.float32) if b.mask is None else b.mask))
            for b in checked
        }

    def plan(self, batches: Mapping, task_weights=None, key: tuple[int, ...] | None = None) -> StepPlan:
        """The plan of a direct call on ``batches``: the given loss weights (else the weighting's initial
        ones, or RLW's draw), PCGrad's order, no gradient norms. Draws are made under ``key``."""
        if task_weights is None:
            weights = self.weighting.initial_task_weights()
        else:
            weights = check_task_weights(task_weights, len(self.module.tasks))  # float64 numpy: jax keeps it only under x64
        order = None
        draws_weights = self.weighting.random_weights and task_weights is None
        if draws_weights or (self.aggregator is not None and self.aggregator.random_order):
            if key is None:
                raise ValueError(
                    "this step draws random choices (RLW's weights or PCGrad's task order) from its seed and a key: "
                    "pass key=(step number,), or use step.apply(state, batches), which counts its steps"
                )
            draw = draw_step(self.weighting, self.aggregator, weights, tuple(key), len(batches))
            weights = weights if task_weights is not None else draw.task_weights
            order = None if draw.order is None else jnp.asarray(draw.order)
        kernel = None
        if uses_row_kernel(self.aggregator):
            kernel = jnp.asarray(row_kernel([_host_rows(batches[name][0]) for name, _ in self.spec.present(batches)]))
        return StepPlan(jnp.asarray(weights), jnp.asarray(False), order, kernel)

    # -- the public calls ----------------------------------------------------------------------
    def apply(self, state: TrainState, batches: Mapping[str, tuple], task_weights=None, key=None) -> tuple[TrainState, StepMetrics]:
        """One step in the state-passing form; ``state`` is donated. Random draws use ``key``, by
        default ``(state.step,)`` (reading it waits for the previous step)."""
        if not isinstance(state, TrainState):
            raise TypeError(f"state must be a jax_impl.TrainState (from step.init_state(params)), got {type(state).__name__}")
        self.check_params(state.params)
        prepared = self.place_batches(self.prepare(batches))
        if key is None and needs_key(self.weighting, self.aggregator):
            key = (int(state.step),)
        return jitted_train_step(self.spec, state, prepared, self.plan(prepared, task_weights, key))

    def __call__(self, params, opt_state, batches: Mapping[str, tuple], task_weights=None, key=None):
        if self.weighting.stateful:
            raise ValueError(
                f"{self.weighting.name} weighting keeps state from step to step: use "
                "state = step.init_state(params) and state, metrics = step.apply(state, batches)"
            )
        self.check_params(params)
        check_step_report(batches, self.aggregator)
        prepared = self.place_batches(self.prepare(batches))
        plan = self.plan(prepared, task_weights, key)
        opt_state = self.grouped_opt_state(opt_state, params)
        state = self.place(TrainState(params, opt_state, {}, jnp.zeros((), jnp.int32)))
        state, metrics = jitted_train_step(self.spec, state, prepared, plan)
        report = {**metrics.losses, TOTAL: metrics.total}
        return state.params, state.opt_state, report if self.aggregator is None else {**report, SOLVER_RESIDUAL: metrics.residual}


def make_train_step(module: MultiTaskNetwork, tx: optax.GradientTransformation, weighting="sum", mesh=None, aggregator=None) -> TrainStep:
    """A jitted, pure step training ``module`` with ``tx`` on its tasks' losses combined by ``weighting``.

    ``tx``: any optax transformation; ``jax_impl.lazy_adam`` updates only the first-layer kernel rows
    that a step's sparse input touches (jax_impl.lazy), and refuses dense input and a mesh.
    ``aggregator``: None (the summed loss) or a gradient-conflict method of mtl_core.aggregation (an
    instance or its name): per-task gradients on the trunk, combined by it (jax_impl.jacobian).
    ``mesh``: an optional ``jax.sharding.Mesh`` with a "data" axis for data-parallel steps.
    """
    return TrainStep(module, tx, weighting, mesh, aggregator)
