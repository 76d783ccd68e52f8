"""``fit``: the shared epoch loop of mtl_core driving the PyTorch step."""

from __future__ import annotations

from typing import Mapping

import numpy as np
import scipy.sparse as sp
import torch

from mtl_core.data.task_data import TaskData
from mtl_core.fitting import RunResult, check_positive, fit_loop
from torch_ref.inputs import as_labels, as_network_input
from torch_ref.distributed import DistributedTrainStep, data_parallel_world, shard, stop_all_ranks_on_error
from torch_ref.model import MultiTaskNetwork
from torch_ref.optimizer import adam
from torch_ref.step import TaskBatch, TrainStep


RUN_LENGTH = 16  # steps handed over per call of the loop: their results are stacked once


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
                mask = torch.from_numpy(mask).to(self.device, self.dtype)
            prepared.append(TaskBatch(self.index[name], spec, self._rows(X), as_labels(y, spec, self.device), mask, denominator))
        return prepared

    def _rows(self, X: sp.csr_matrix):
        return as_network_input(X, self.model.input_dim, self.dtype, self.device)

    def train_run(self, steps, task_weights: np.ndarray, record_norms: np.ndarray) -> RunResult:
        weights = torch.as_tensor(task_weights).to(device=self.device, dtype=self.dtype)
        losses, totals, norms = {name: [] for name in steps[0]}, [], []
        for batches, record in zip(steps, record_norms):
            step_losses, total, step_norms = self.step.run(self._prepare(batches), weights, bool(record))
            for name, value in step_losses.items():
                losses[name].append(value)
            totals.append(total)
            norms.append(step_norms)
        width = next((n.shape[0] for n in norms if n is not None), 0)  # unrecorded steps: zeros, ignored
        filled = [n if n is not None else torch.zeros(width, dtype=self.dtype, device=self.device) for n in norms]
        return RunResult(
            losses={name: torch.stack(values).cpu() for name, values in losses.items()},
            total=torch.stack(totals).cpu(),
            grad_norms=torch.stack(filled).cpu(),
        )

    @torch.no_grad()
    def predict_logits(self, task_index: int, X: sp.csr_matrix) -> np.ndarray:
        return self.model(self._rows(X), task_index).cpu().numpy()

    def log_variances(self):
        log_var = self.step.log_variances
        return None if log_var is None else log_var.detach().cpu().numpy()


def fit(
    model: MultiTaskNetwork,
    data: Mapping[str, TaskData],
    *,
    epochs: int = 6,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    curriculum="round_robin",
    eval_data: Mapping[str, TaskData] | None = None,
    weighting="sum",
    optimizer: torch.optim.Optimizer | None = None,
    grad_norm_every: int = 10,
    first_epoch: int = 0,
    previous_losses=None,
    progress: bool = False,
) -> tuple[MultiTaskNetwork, dict]:
    """Train ``model`` in place with Adam on the tasks in ``data``; return it and the history.

    The batches come from mtl_core's curriculum for ``seed``: jax_impl.fit with the same seed
    sees the same ones. ``optimizer`` defaults to Adam(lr); pass one (and ``first_epoch``) to resume,
    with ``previous_losses=<the earlier history["loss"]>`` when the weighting is ``dwa``.
    Gradient norms are recorded every ``grad_norm_every`` steps of an epoch (from its first).

    When ``torch.distributed`` is initialised with several ranks (e.g. under ``torchrun``), every
    rank calls fit with the same arguments and trains its shard of each batch with
    DistributedDataParallel (see torch_ref.distributed); the result is the single-process one,
    and the history, of the global batches, is the same on every rank.
    """
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
    lr = check_positive(lr, "lr")
    optimizer = optimizer if optimizer is not None else adam(model, lr)
    world = data_parallel_world()
    step = (DistributedTrainStep if world else TrainStep)(model, optimizer, weighting)
    with stop_all_ranks_on_error(world):
        history = fit_loop(
            TorchTrainer(step, world),
            arch=model.arch,
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
    return model, history
