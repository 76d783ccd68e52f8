"""One jitted, pure training step: every task's loss, their weighted sum, one optax update.

The optimiser state is kept per parameter group (the trunk, each head, the loss weighting) with
``optax.multi_transform``, so that a head left out of a step keeps its parameters *and* its Adam
moments and step count, exactly as ``torch.optim.Adam`` skips a parameter that has no gradient.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtl_core.tasks import TOTAL, check_step_report
from mtl_core.weighting import resolve_weighting
from jax_impl.inputs import as_labels, as_network_input, pad_leading, row_count
from jax_impl.losses import combine_losses, task_loss
from jax_impl.model import MultiTaskNetwork
from jax_impl.params import check_variables
from jax_impl.sharding import check_mesh, constrain_params, padded_rows, place_params, place_rows, place_state

# A checked batch dict: {task name: (network input, labels, 0/1 row mask)}.
Batches = dict


def group_of(path) -> str:
    """The optimiser group of a parameter: "trunk", "heads.{task}" or "weighting"."""
    keys = [getattr(entry, "key", entry) for entry in path]
    if keys[0] == "weighting":
        return "weighting"
    return "trunk" if keys[1] == "trunk" else f"heads.{keys[2]}"


def group_labels(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: group_of(path), params)


def global_norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree_util.tree_leaves(tree)))


class TrainStep:
    """``step(params, opt_state, {task: (x, y) or (x, y, row_mask)}) -> (params, opt_state, losses)``.

    ``losses`` holds each task's mean loss and "total". params and opt_state are donated: the
    arrays passed in are invalid afterwards. ``opt_state`` comes from ``step.init(params)``; a
    plain ``tx.init(params)`` state is accepted too and split into groups on the first call.

    With a ``mesh`` (a "data" axis, optionally a "model" axis) each task's batch is split by rows
    over "data" (padded with masked rows to a multiple of its size: the loss is unchanged), params
    and optimiser state are replicated (trunk kernels split over "model"), and XLA's partitioner
    adds the gradient all-reduce. The result is the single-device one.
    """

    def __init__(self, module: MultiTaskNetwork, tx: optax.GradientTransformation, weighting="sum", mesh=None):
        if not isinstance(module, MultiTaskNetwork):
            raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
        if not isinstance(tx, optax.GradientTransformation):
            raise TypeError(f"tx must be an optax.GradientTransformation, got {type(tx).__name__}")
        self.module, self.tx = module, tx
        self.tasks = module.tasks
        self.weighting = resolve_weighting(weighting, module.tasks)
        self.mesh = None if mesh is None else check_mesh(mesh)
        self.default_task_weights = self.weighting.initial_task_weights()
        groups = ["trunk"] + [f"heads.{t.name}" for t in self.tasks] + (["weighting"] if self.weighting.learnable else [])
        self.grouped = optax.multi_transform({group: tx for group in groups}, group_labels)
        self._update = jax.jit(self._update_fn, donate_argnums=(0, 1))
        self._run = jax.jit(self._run_fn, donate_argnums=(0, 1))
        self._checked_structures: set = set()

    # -- state ---------------------------------------------------------------------------------
    def init_params(self, params) -> dict:
        """``params`` with the loss weighting's learnable state added when it has one."""
        params = dict(params)
        if self.weighting.learnable and "weighting" not in params:
            dtype = params["params"]["trunk"]["0"]["kernel"].dtype
            params["weighting"] = {"log_var": jnp.zeros(len(self.tasks), dtype)}
        return params

    def init(self, params) -> optax.OptState:
        """The grouped optimiser state for ``params`` (one ``tx`` state per group)."""
        if self.mesh is None:
            return self.grouped.init(params)
        return place_state(self.grouped.init(params), self.mesh)

    def place(self, params, opt_state):
        """params and opt_state as global arrays on the mesh; unchanged without a mesh."""
        if self.mesh is None:
            return params, opt_state
        return place_params(params, self.mesh), place_state(opt_state, self.mesh)

    def place_batches(self, batches: Batches, row_axis: int = 0) -> Batches:
        """Batches padded to a multiple of the "data" axis (masked rows) and split over it."""
        if self.mesh is None:
            return batches
        placed = {}
        for name, batch in batches.items():
            rows = padded_rows(row_count(batch[0]) if row_axis == 0 else batch[2].shape[row_axis], self.mesh)
            placed[name] = place_rows(pad_leading(batch, rows, row_axis), self.mesh, row_axis)
        return placed

    def _grouped_state(self, opt_state, params):
        template = jax.eval_shape(self.grouped.init, params)
        if jax.tree_util.tree_structure(opt_state) == jax.tree_util.tree_structure(template):
            return opt_state
        labels = group_labels(params)
        try:
            inner = {
                label: type(template.inner_states[label])(
                    inner_state=optax.tree_map_params(
                        self.tx,
                        lambda leaf, own, label=label: leaf if own == label else optax.MaskedNode(),
                        opt_state,
                        labels,
                        # every group gets its own copy of the step count: the step donates them all
                        transform_non_params=jnp.array,
                    )
                )
                for label in template.inner_states
            }
        except Exception as error:  # any mismatch between the state and params
            raise TypeError(
                "opt_state must come from step.init(params) (or tx.init(params) for the same params), "
                f"but its structure does not fit params: {error}"
            ) from None
        return template._replace(inner_states=inner)

    # -- checking the user's input -------------------------------------------------------------
    def prepare(self, batches: Mapping[str, tuple]) -> Batches:
        """Check a batch dict and turn it into jax arrays with a row mask, in model task order."""
        if not isinstance(batches, Mapping) or not batches:
            raise ValueError(f"batches must be a non-empty dict of task name -> (x, y), got {batches!r}")
        names = [t.name for t in self.tasks]
        unknown = [name for name in batches if name not in names]
        if unknown:
            raise ValueError(f"batches name tasks {unknown} that the model lacks; its tasks are {names}")
        prepared = {}
        for spec in self.tasks:
            if spec.name not in batches:
                continue
            batch = batches[spec.name]
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise ValueError(f"the batch of task {spec.name!r} must be (x, y) or (x, y, row_mask), got {type(batch).__name__}")
            x, y = as_network_input(batch[0]), as_labels(batch[1], spec)
            n = row_count(x)
            if y.shape[0] != n:
                raise ValueError(f"the batch of task {spec.name!r} has {n} rows of x but {y.shape[0]} labels")
            if n == 0:
                raise ValueError(f"the batch of task {spec.name!r} is empty")
            mask = np.ones(n, np.float32) if len(batch) == 2 else np.asarray(batch[2])
            if mask.shape != (n,) or not np.all((mask == 0) | (mask == 1)) or not mask.any():
                raise ValueError(f"the row mask of task {spec.name!r} must be 0/1 of shape ({n},) with a 1, got shape {mask.shape}")
            prepared[spec.name] = (x, y, jnp.asarray(mask, jnp.float32))
        return prepared

    def _check_params(self, params) -> None:
        structure = jax.tree_util.tree_structure(params), tuple(np.shape(l) for l in jax.tree_util.tree_leaves(params))
        if structure not in self._checked_structures:
            check_variables(self.module, params)
            if self.weighting.learnable and "weighting" not in params:
                raise ValueError("uncertainty weighting learns log-variances: pass step.init_params(params)")
            self._checked_structures.add(structure)

    # -- the pure functions --------------------------------------------------------------------
    def _loss(self, params, batches: Batches, task_weights):
        names = list(batches)
        indices = [[t.name for t in self.tasks].index(name) for name in names]
        all_logits = self.module.apply(
            {"params": params["params"]},
            [batches[name][0] for name in names],
            indices,
            method=MultiTaskNetwork.forward_tasks,
        )
        losses = [task_loss(self.tasks[i], logits, batches[n][1], batches[n][2]) for i, n, logits in zip(indices, names, all_logits)]
        log_var = params.get("weighting", {}).get("log_var")
        total = combine_losses(self.weighting, losses, indices, task_weights, log_var)
        return total, dict(zip(names, losses))

    def _apply(self, params, opt_state, grads, present: set[str]):
        """One optax update; groups not in ``present`` keep their params and their state."""
        updates, new_state = self.grouped.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        labels = group_labels(params)
        new_params = jax.tree_util.tree_map(lambda new, old, g: new if g in present else old, new_params, params, labels)
        inner = {g: s if g in present else opt_state.inner_states[g] for g, s in new_state.inner_states.items()}
        return new_params, new_state._replace(inner_states=inner)

    def _present_groups(self, batches: Batches) -> set[str]:
        return {"trunk", "weighting"} | {f"heads.{name}" for name in batches}

    def _layer_norms(self, grads, batches: Batches) -> jax.Array:
        """Gradient norm of each trunk layer, then of each present head (model order)."""
        tree = grads["params"]
        trunk = [global_norm(tree["trunk"][str(i)]) for i in range(len(tree["trunk"]))]
        heads = [global_norm(tree["heads"][t.name]) for t in self.tasks if t.name in batches]
        return jnp.stack(trunk + heads)

    def _update_fn(self, params, opt_state, batches: Batches, task_weights):
        (total, losses), grads = jax.value_and_grad(self._loss, has_aux=True)(params, batches, task_weights)
        params, opt_state = self._apply(params, opt_state, grads, self._present_groups(batches))
        if self.mesh is not None:
            params = constrain_params(params, self.mesh)
        return params, opt_state, losses, total, grads

    def _run_fn(self, params, opt_state, stacked: Batches, task_weights, record_norms, active):
        """``lax.scan`` of the step over a leading axis of K stacked batches (one dispatch).

        Steps whose ``active`` flag is False are skipped, so runs of any length up to K share one
        compiled program; ``record_norms`` picks the steps whose gradient norms are computed.
        """
        n_layers = len(self.module.hidden_dims) + len(stacked)

        def train(carry, batches, record):
            params, opt_state, losses, total, grads = self._update_fn(*carry, batches, task_weights)
            norms = jax.lax.cond(
                record, lambda g: self._layer_norms(g, batches), lambda g: jnp.zeros(n_layers, total.dtype), grads
            )
            return (params, opt_state), (losses, total, norms)

        def skip(carry, batches, record):
            del batches, record
            zero = jnp.zeros((), carry[0]["params"]["trunk"]["0"]["kernel"].dtype)
            return carry, ({name: zero for name in stacked}, zero, jnp.zeros(n_layers, zero.dtype))

        def body(carry, inputs):
            batches, record, is_active = inputs
            return jax.lax.cond(is_active, train, skip, carry, batches, record)

        (params, opt_state), (losses, total, norms) = jax.lax.scan(body, (params, opt_state), (stacked, record_norms, active))
        return params, opt_state, losses, total, norms

    # -- the public call -----------------------------------------------------------------------
    def __call__(self, params, opt_state, batches: Mapping[str, tuple], task_weights=None):
        self._check_params(params)
        check_step_report(batches)
        batches = self.place_batches(self.prepare(batches))
        task_weights = self._task_weights(task_weights)
        params, opt_state = self.place(params, self._grouped_state(opt_state, params))
        params, opt_state, losses, total, _ = self._update(params, opt_state, batches, task_weights)
        return params, opt_state, {**losses, TOTAL: total}

    def run(self, params, opt_state, stacked: Batches, task_weights, record_norms, active):
        """K steps in one dispatch over batches stacked on a leading axis (used by ``fit``)."""
        return self._run(
            params, opt_state, stacked, self._task_weights(task_weights), jnp.asarray(record_norms), jnp.asarray(active)
        )

    def _task_weights(self, task_weights) -> jax.Array:
        if task_weights is None:
            return jnp.asarray(self.default_task_weights)
        weights = np.asarray(task_weights, dtype=np.float64)  # jax keeps float64 only under x64
        if weights.shape != (len(self.tasks),):
            raise ValueError(f"task_weights must have shape ({len(self.tasks)},), got {weights.shape}")
        return jnp.asarray(weights)


def make_train_step(module: MultiTaskNetwork, tx: optax.GradientTransformation, weighting="sum", mesh=None) -> TrainStep:
    """A jitted, pure step training ``module`` with ``tx`` on the weighted sum of its tasks' losses.

    ``mesh``: an optional ``jax.sharding.Mesh`` with a "data" axis for data-parallel steps.
    """
    return TrainStep(module, tx, weighting, mesh)
