"""``fit``: the shared epoch loop of mtl_core driving the PyTorch step."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp
import torch

from mtl_core.config import TrainConfig, training_config
from mtl_core.data.task_data import TaskData
from mtl_core.fitting import RunPlan, RunResult, fit_loop
from torch_ref.inputs import as_labels, as_network_input, to_device
from torch_ref.distributed import DistributedTrainStep, data_parallel_world, shard, stop_all_ranks_on_error
from torch_ref.model import MultiTaskNetwork
from torch_ref.optimizer import adam
from torch_ref.step import TaskBatch, TrainStep


RUN_LENGTH = 16  # steps handed over per call of the loop: their results are stacked once


def _host(tensor: torch.Tensor) -> torch.Tensor:
    """A result on the host, in a dtype numpy has (a bfloat16 model's losses become float32)."""
    tensor = tensor.detach().cpu()
    return tensor.float() if tensor.dtype == torch.bfloat16 else tensor


class TorchTrainer:
    """The backend half of ``fit``: runs steps and forward passes for mtl_core's loop."""

    def __init__(self, step: TrainStep, world: tuple[int, int] | None = None):
        self.step, self.world = step, world
        self.model = step.model
        self.device = step.model.trunk[0].weight.device
        self.dtype = step.model.trunk[0].weight.dtype
        self.index = {task.name: i for i, task in enumerate(self.model.tasks)}

    def _prepare(self, batches) -> list[TaskBatch]:
        """Tensors for one step; with several ranks, this rank's shard of each global batch."""
        prepared = []
        for name, (X, y) in batches.items():
            spec, mask, denominator = self.model.tasks[self.index[name]], None, None
            if self.world is not None:
                X, y, mask, denominator = shard(X, y, *self.world)
                mask = to_device(torch.from_numpy(mask), self.device, self.dtype)
            prepared.append(TaskBatch(self.index[name], spec, self._rows(X), as_labels(y, spec, self.device), mask, denominator))
        return prepared

    def _rows(self, X: sp.csr_matrix):
        return as_network_input(X, self.model.input_dim, self.dtype, self.device)

    def train_run(self, steps, plan: RunPlan) -> RunResult:
        weights = to_device(torch.as_tensor(plan.task_weights), self.device, self.dtype)
        orders = [None] * len(steps) if plan.orders is None else torch.as_tensor(plan.orders)
        losses, totals, norms, residuals = {name: [] for name in steps[0]}, [], [], []
        for batches, step_weights, record, order in zip(steps, weights, plan.record_norms, orders):
            step_losses, total, step_norms, residual = self.step.run(self._prepare(batches), step_weights, bool(record), order)
            for name, value in step_losses.items():
                losses[name].append(value)
            totals.append(total)
            norms.append(step_norms)
            residuals.append(residual)
        width = next((n.shape[0] for n in norms if n is not None), 0)  # unrecorded steps: zeros, ignored
        filled = [n if n is not None else torch.zeros(width, dtype=self.dtype, device=self.device) for n in norms]
        return RunResult(
            losses={name: _host(torch.stack(values)) for name, values in losses.items()},
            total=_host(torch.stack(totals)),
            grad_norms=_host(torch.stack(filled)),
            residuals=None if self.step.aggregator is None else _host(torch.stack(residuals)),
        )

    @torch.no_grad()
    def predict_logits(self, task_index: int, X: sp.csr_matrix) -> np.ndarray:
        return _host(self.model(self._rows(X), task_index)).numpy()

    def weighting_state(self) -> dict[str, np.ndarray]:
        state = {name: _host(value).numpy() for name, value in self.step.weighting_state.items()}
        if self.step.log_variances is not None:
            state["log_var"] = _host(self.step.log_variances).numpy()
        return state


def fit(
    model: MultiTaskNetwork,
    data: Mapping[str, TaskData],
    config: TrainConfig | None = None,
    *,
    eval_data: Mapping[str, TaskData] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    previous_losses=None,
    **options,
) -> tuple[MultiTaskNetwork, dict]:
    """Train ``model`` in place as ``config`` says on the tasks in ``data``; return it and the history.

    ``config`` is a mtl_core.TrainConfig (default: the blog's recipe); its fields may also be given
    as keywords (``epochs=2, lr=1e-2, weighting="dwa", ...``), which replace the config's. The
    batches come from mtl_core's curriculum for the seed: jax_impl.fit with the same seed sees the
    same ones. ``optimizer`` defaults to Adam(lr) (``torch_ref.lazy_adam(model)`` updates only the
    first-layer rows a step touches: for large vocabularies); pass one (and ``first_epoch``) to resume,
    with ``previous_losses=<the earlier history["loss"]>`` when the weighting is ``dwa``.

    When ``torch.distributed`` is initialised with several ranks (e.g. under ``torchrun``), every
    rank calls fit with the same arguments and trains its shard of each batch with
    DistributedDataParallel (see torch_ref.distributed); the result is the single-process one,
    and the history, of the global batches, is the same on every rank. Lazy Adam is refused there.
    """
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
    config = training_config(config, options)
    optimizer = optimizer if optimizer is not None else adam(model, config.lr)
    world = data_parallel_world()
    step = (DistributedTrainStep if world else TrainStep)(model, optimizer, config.weighting, config.aggregator)
    with stop_all_ranks_on_error(world):
        history = fit_loop(
            TorchTrainer(step, world),
            arch=model.arch,
            config=config.with_options(weighting=step.weighting),
            data=data,
            eval_data=eval_data,
            run_length=RUN_LENGTH,
            previous_losses=previous_losses,
        )
    return model, history
