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

from mtl_core.data.task_data import TaskData
from mtl_core.fitting import RunResult, check_count, check_positive, check_task_data, fit_loop
from mtl_core.sparse import pad_rows, stack_padded
from mtl_core.weighting import Weighting, resolve_weighting
from jax_impl.inputs import as_network_input
from jax_impl.model import MultiTaskNetwork
from jax_impl.optimizer import adam
from jax_impl.params import init_params
from jax_impl.sharding import host_copy, padded_rows
from jax_impl.step import TrainStep

RUN_LENGTH = 16


@functools.lru_cache(maxsize=16)
def default_step(module: MultiTaskNetwork, lr: float, weighting: Weighting, mesh) -> TrainStep:
    """The step for jax_impl.adam(lr), kept so that repeated fits reuse its compiled programs."""
    return TrainStep(module, adam(lr), weighting, mesh)


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


class JaxTrainer:
    """The backend half of ``fit``: runs scanned steps and forward passes for mtl_core's loop."""

    def __init__(self, step: TrainStep, params, opt_state, batch_size: int):
        self.step, self.params, self.opt_state = step, params, opt_state
        self.rows = padded_rows(batch_size, step.mesh)  # a multiple of the mesh's "data" axis
        self._predict = jax.jit(
            lambda params, x, index: step.module.apply({"params": params["params"]}, x, task_id=index),
            static_argnums=2,
        )
        self._eval_params = (None, None)

    def _host(self, tree):
        """Results as numpy arrays: on a mesh, the same on every process (computed once, globally)."""
        return tree if self.step.mesh is None else jax.tree_util.tree_map(host_copy, tree)

    def train_run(self, steps, task_weights, record_norms) -> RunResult:
        # Every run is RUN_LENGTH long (the tail marked inactive), so the scan compiles once per task set.
        k = len(steps)
        stacked = stack_batches(steps, self.rows, RUN_LENGTH)
        stacked = jax.device_put(stacked) if self.step.mesh is None else self.step.place_batches(stacked, row_axis=1)
        active = np.arange(RUN_LENGTH) < k
        record = np.zeros(RUN_LENGTH, bool)
        record[:k] = record_norms
        self.params, self.opt_state, losses, total, norms = self.step.run(
            self.params, self.opt_state, stacked, task_weights, record, active
        )
        losses, total, norms = self._host((losses, total, norms))
        return RunResult(losses={n: v[:k] for n, v in losses.items()}, total=total[:k], grad_norms=norms[:k])

    def predict_logits(self, task_index: int, X: sp.csr_matrix) -> np.ndarray:
        if self._eval_params[0] is not self.params:  # evaluation runs on one device, from a host copy
            self._eval_params = (self.params, self._host(self.params))
        return np.asarray(self._predict(self._eval_params[1], as_network_input(pad_rows(X)), task_index))

    def log_variances(self):
        weighting = self.params.get("weighting")
        return None if weighting is None else np.asarray(self._host(weighting["log_var"]))


def fit(
    module: MultiTaskNetwork,
    data: Mapping[str, TaskData],
    *,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    curriculum="round_robin",
    eval_data: Mapping[str, TaskData] | None = None,
    params=None,
    weighting="sum",
    tx: optax.GradientTransformation | None = None,
    opt_state=None,
    grad_norm_every: int = 10,
    first_epoch: int = 0,
    previous_losses=None,
    progress: bool = False,
    return_opt_state: bool = False,
    mesh=None,
) -> tuple[dict, dict]:
    """Train with Adam on the tasks in ``data``; return the trained params and the history.

    ``params=None`` initialises from ``seed``; given params (e.g. imported from a torch model) are
    the starting weights and are not modified. The batches come from mtl_core's curriculum for
    ``seed``, the same as torch_ref.fit's. ``tx`` defaults to ``jax_impl.adam(lr)`` (optax.adam
    with its hyper-parameters in its state). To resume, pass ``opt_state`` (from
    ``return_opt_state=True`` or ``load_checkpoint``; its stored hyper-parameters win over ``lr``)
    and ``first_epoch`` (and ``previous_losses=<the earlier history["loss"]>`` for ``dwa``).
    ``return_opt_state=True`` returns ``(params, history, opt_state)``.
    ``mesh``: a ``jax.sharding.Mesh`` with a "data" axis to train data-parallel (see TrainStep);
    batches are padded with masked rows to a multiple of its size, so the result is unchanged.
    """
    if not isinstance(module, MultiTaskNetwork):
        raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
    lr = check_positive(lr, "lr")
    seed = check_count(seed, "seed")
    checked = check_task_data(data, module.arch)
    input_dim = next(iter(checked.values())).input_dim
    arch = module.arch.with_input_dim(input_dim)
    weighting = resolve_weighting(weighting, module.tasks)
    step = TrainStep(module, tx, weighting, mesh) if tx is not None else default_step(module, lr, weighting, mesh)
    if params is None:
        params = init_params(module, jax.random.key(seed), input_dim)
    # Copies: the step donates its inputs, and the caller's params must stay valid.
    params = step.init_params(jax.tree_util.tree_map(jnp.array, params))
    step._check_params(params)
    opt_state = step.init(params) if opt_state is None else step._grouped_state(jax.tree_util.tree_map(jnp.array, opt_state), params)
    params, opt_state = step.place(params, opt_state)
    trainer = JaxTrainer(step, params, opt_state, batch_size)
    history = fit_loop(
        trainer,
        arch=arch,
        weighting=step.weighting,
        data=data,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        curriculum=curriculum,
        eval_data=eval_data,
        run_length=RUN_LENGTH,
        grad_norm_every=grad_norm_every,
        first_epoch=first_epoch,
        previous_losses=previous_losses,
        progress=progress,
    )
    if return_opt_state:
        return trainer.params, history, trainer.opt_state
    return trainer.params, history
