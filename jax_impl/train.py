"""``fit``: the shared epoch loop of mtl_core driving the jitted JAX step.

Consecutive steps that train the same tasks run as one ``lax.scan`` dispatch of up to
``RUN_LENGTH`` steps, their batches padded to ``batch_size`` rows (with a row mask) and to one
bucketed width, so that a whole fit compiles a handful of programs.
"""

from __future__ import annotations

import functools
from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse as sp

from mtl_core.config import TrainConfig, training_config
from mtl_core.data.task_data import TaskData
from mtl_core.fitting import RunPlan, RunResult, check_task_data, fit_loop
from mtl_core.sparse import pad_rows, row_kernel, stack_padded
from jax_impl.inputs import as_network_input
from jax_impl.model import MultiTaskNetwork
from jax_impl.optimizer import adam, lazy_adam
from jax_impl.params import init_params
from jax_impl.sharding import host_copy, padded_rows
from jax_impl.state import WEIGHTING, TrainState, is_lazy_state
from jax_impl.jacobian import uses_row_kernel
from jax_impl.step import StepPlan, TrainStep, jitted_run_steps

RUN_LENGTH = 16


@functools.lru_cache(maxsize=16)
def default_tx(lr: float, lazy: bool = False) -> optax.GradientTransformation:
    """jax_impl.adam(lr) (lazy_adam(lr) if ``lazy``), one object per setting: fits with equal settings
    share their compiled programs."""
    return lazy_adam(lr) if lazy else adam(lr)


def _pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    return np.concatenate([array, np.zeros((rows - len(array),) + array.shape[1:], array.dtype)])


def stack_batches(steps, batch_size: int, length: int) -> dict:
    """K <= length steps' {task: (CSR, labels)} -> {task: (PaddedRows, labels, row mask)}, each
    with a leading axis of ``length``: rows padded to ``batch_size``, steps padded with empty ones.
    """
    stacked = {}
    for name in steps[0]:
        matrices = [step[name][0] for step in steps]
        matrices += [sp.csr_matrix(matrices[0].shape[:0] + (0, matrices[0].shape[1]), dtype=np.float32)] * (length - len(steps))
        labels = [_pad_rows(step[name][1], batch_size) for step in steps]
        labels += [np.zeros_like(labels[0])] * (length - len(steps))
        counts = [step[name][0].shape[0] for step in steps] + [batch_size] * (length - len(steps))
        mask = (np.arange(batch_size)[None, :] < np.array(counts)[:, None]).astype(np.float32)
        stacked[name] = (stack_padded(matrices, batch_size), np.stack(labels), mask)
    return stacked


def pad_rows_to(X: sp.csr_matrix, rows: int) -> sp.csr_matrix:
    """X with empty rows appended up to ``rows`` (as stack_batches pads a step's batch)."""
    return sp.vstack([X, sp.csr_matrix((rows - X.shape[0], X.shape[1]), dtype=X.dtype)], format="csr")


def _pad_steps(array: np.ndarray, length: int) -> np.ndarray:
    """(k, ...) -> (length, ...) by repeating the last entry: the padded steps are inactive."""
    return np.concatenate([array, np.repeat(array[-1:], length - len(array), axis=0)])


class JaxTrainer:
    """The backend half of ``fit``: runs scanned steps and forward passes for mtl_core's loop."""

    def __init__(self, step: TrainStep, state: TrainState, batch_size: int):
        self.step, self.state = step, state
        self.rows = padded_rows(batch_size, step.mesh)  # a multiple of the mesh's "data" axis
        module = step.module
        self._predict = jax.jit(lambda params, x, index: module.apply({"params": params["params"]}, x, task_id=index), static_argnums=2)
        self._eval_params = (None, None)

    def _host(self, tree):
        """Results as numpy arrays: on a mesh, the same on every process (computed once, globally)."""
        return tree if self.step.mesh is None else jax.tree_util.tree_map(host_copy, tree)

    def train_run(self, steps, plan: RunPlan) -> RunResult:
        # Every run is RUN_LENGTH long (the tail marked inactive), so the scan compiles once per task set.
        k = len(steps)
        stacked = stack_batches(steps, self.rows, RUN_LENGTH)
        stacked = jax.device_put(stacked) if self.step.mesh is None else self.step.place_batches(stacked, row_axis=1)
        kernels = None
        if uses_row_kernel(self.step.aggregator):  # X Xᵀ of each step's (padded) rows, a sparse product on the host
            kernels = np.stack([row_kernel([pad_rows_to(step[name][0], self.rows) for name in step]) for step in steps])
        arrays = (plan.task_weights, plan.record_norms, plan.orders, kernels)
        plans = StepPlan(*(None if a is None else jnp.asarray(_pad_steps(a, RUN_LENGTH)) for a in arrays))
        active = jnp.asarray(np.arange(RUN_LENGTH) < k)
        self.state, metrics = jitted_run_steps(self.step.spec, self.state, stacked, plans, active)
        losses, total, norms, residuals = self._host((metrics.losses, metrics.total, metrics.grad_norms, metrics.residual))
        return RunResult({n: v[:k] for n, v in losses.items()}, total[:k], norms[:k], residuals[:k])

    @property
    def params(self):
        return self.state.params

    def predict_logits(self, task_index: int, X: sp.csr_matrix) -> np.ndarray:
        if self._eval_params[0] is not self.params:  # evaluation runs on one device, from a host copy
            self._eval_params = (self.params, self._host(self.params))
        return np.asarray(self._predict(self._eval_params[1], as_network_input(pad_rows(X)), task_index))

    def weighting_state(self) -> dict[str, np.ndarray]:
        state = {name: np.asarray(value) for name, value in self._host(self.state.weighting).items()}
        if WEIGHTING in self.params:
            state["log_var"] = np.asarray(self._host(self.params[WEIGHTING]["log_var"]))
        return state


def fit(
    module: MultiTaskNetwork,
    data: Mapping[str, TaskData],
    config: TrainConfig | None = None,
    *,
    eval_data: Mapping[str, TaskData] | None = None,
    params=None,
    tx: optax.GradientTransformation | None = None,
    opt_state=None,
    weighting_state=None,
    previous_losses=None,
    return_opt_state: bool = False,
    return_state: bool = False,
    mesh=None,
    donate: bool = False,
    **options,
) -> tuple[dict, dict]:
    """Train on the tasks in ``data`` as ``config`` says; return the trained params and the history.

    ``config`` is a mtl_core.TrainConfig (default: the blog's recipe); its fields may also be given
    as keywords (``epochs=2, lr=1e-2, weighting="dwa", ...``), which replace the config's.
    ``params=None`` initialises from the config's seed; given params (e.g. imported from a torch
    model) are the starting weights and are not modified. The batches come from mtl_core's
    curriculum for the seed, the same as torch_ref.fit's. ``tx`` defaults to ``jax_impl.adam(lr)``
    (optax.adam with its hyper-parameters in its state), or ``jax_impl.lazy_adam(lr)`` when
    ``opt_state`` is lazy Adam's. To resume, pass ``opt_state`` (from
    ``return_opt_state=True`` or ``load_checkpoint``; its stored hyper-parameters win over ``lr``)
    and ``first_epoch`` (and ``previous_losses=<the earlier history["loss"]>`` for ``dwa``).
    ``return_opt_state=True`` returns ``(params, history, opt_state)``; ``return_state=True`` returns
    ``(params, history, state)``, the whole TrainState, whose ``weighting`` (FAMO's logits) a resumed
    fit takes as ``weighting_state``.
    ``mesh``: a ``jax.sharding.Mesh`` with a "data" axis to train data-parallel (see TrainStep);
    batches are padded with masked rows to a multiple of its size, so the result is unchanged.
    ``donate=True`` hands the given ``params`` and ``opt_state`` over instead of copying them (the
    first step deletes them): for a model too large to hold twice, or to copy at every call (at
    2^20 × 200 the kernel and both moments take about a second to copy on a CPU).
    """
    if not isinstance(module, MultiTaskNetwork):
        raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
    config = training_config(config, options)
    checked = check_task_data(data, module.arch)
    input_dim = next(iter(checked.values())).input_dim
    tx = default_tx(config.lr, is_lazy_state(opt_state)) if tx is None else tx
    step = TrainStep(module, tx, config.weighting, mesh, config.aggregator)
    config = config.with_options(weighting=step.weighting)
    if not isinstance(donate, bool):
        raise TypeError(f"donate must be True or False, got {donate!r}")
    # The step donates its inputs: the caller's params and opt_state are copied to stay valid, unless donated.
    keep = functools.partial(jax.tree_util.tree_map, jnp.asarray if donate else jnp.array)  # asarray: no copy of a jax array
    params = init_params(module, jax.random.key(config.seed), input_dim) if params is None else keep(params)
    state = step.init_state(params, None if opt_state is None else keep(opt_state))
    if weighting_state is not None:
        state = step.with_weighting_state(state, weighting_state)
    trainer = JaxTrainer(step, state, config.batch_size)
    history = fit_loop(
        trainer,
        arch=module.arch.with_input_dim(input_dim),
        config=config,
        data=data,
        eval_data=eval_data,
        run_length=RUN_LENGTH,
        previous_losses=previous_losses,
    )
    if return_state:
        return trainer.params, history, trainer.state
    if return_opt_state:
        return trainer.params, history, trainer.state.opt_state
    return trainer.params, history
