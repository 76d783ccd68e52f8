"""One training step: every task's loss on its batch, their weighted sum, one optimiser step."""

from __future__ import annotations

from typing import Mapping, NamedTuple

import numpy as np
import torch

from mtl_core.labels import canonical_labels
from mtl_core.tasks import TOTAL, TaskSpec, check_step_report
from mtl_core.weighting import resolve_weighting
from torch_ref.inputs import as_labels, as_network_input, num_rows
from torch_ref.losses import combine_losses, task_loss
from torch_ref.model import MultiTaskNetwork

LOG_VARIANCE_GROUP = "weighting.log_var"



class TaskBatch(NamedTuple):
    """One task's checked batch: network input, labels, optional 0/1 row mask and loss denominator."""

    index: int
    spec: TaskSpec
    x: object
    y: torch.Tensor
    mask: torch.Tensor | None = None
    denominator: float | None = None


def _layer_norm(parameters) -> torch.Tensor:
    """L2 norm of a layer's whole gradient (kernel and bias); a BLAS dot is the fastest reduction."""
    flat = [p.grad.reshape(-1) for p in parameters if p.grad is not None]
    return torch.stack([torch.dot(g, g) for g in flat]).sum().sqrt()


class TrainStep:
    """Callable: ``step({task name: (x, y) or (x, y, row_mask)}) -> {task name: loss, "total": loss}``.

    Tasks absent from the dict get no gradient, so their heads (and their Adam state) are left
    untouched, as ``optimizer.zero_grad(set_to_none=True)`` makes ``torch.optim.Adam`` do.
    With ``weighting="uncertainty"`` the learnable log-variances are added to ``optimizer`` as a
    param group named "weighting.log_var" (or found there when the optimizer already has one).
    """

    def __init__(self, model: MultiTaskNetwork, optimizer: torch.optim.Optimizer, weighting="sum"):
        if not isinstance(model, MultiTaskNetwork):
            raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        self.model, self.optimizer = model, optimizer
        self.weighting = resolve_weighting(weighting, model.tasks)
        reference = model.trunk[0].weight
        self.default_task_weights = torch.tensor(
            self.weighting.initial_task_weights(), dtype=reference.dtype, device=reference.device
        )
        self.log_variances = self._log_variances(reference) if self.weighting.learnable else None

    def _log_variances(self, reference: torch.Tensor) -> torch.nn.Parameter:
        for group in self.optimizer.param_groups:
            if group.get("name") == LOG_VARIANCE_GROUP:
                (parameter,) = group["params"]
                return parameter
        parameter = torch.nn.Parameter(torch.zeros(len(self.model.tasks), dtype=reference.dtype, device=reference.device))
        self.optimizer.add_param_group({"params": [parameter], "name": LOG_VARIANCE_GROUP})
        return parameter

    def prepare(self, batches: Mapping[str, tuple]) -> list[TaskBatch]:
        """Check a user's batch dict and turn it into tensors, in the model's task order."""
        if not isinstance(batches, Mapping) or not batches:
            raise ValueError(f"batches must be a non-empty dict of task name -> (x, y), got {batches!r}")
        names = [t.name for t in self.model.tasks]
        unknown = [name for name in batches if name not in names]
        if unknown:
            raise ValueError(f"batches name tasks {unknown} that the model lacks; its tasks are {names}")
        reference = self.model.trunk[0].weight
        prepared = []
        for index, spec in enumerate(self.model.tasks):
            if spec.name not in batches:
                continue
            batch = batches[spec.name]
            if not isinstance(batch, (tuple, list)) or len(batch) not in (2, 3):
                raise ValueError(f"the batch of task {spec.name!r} must be (x, y) or (x, y, row_mask), got {type(batch).__name__}")
            x = as_network_input(batch[0], self.model.input_dim, reference.dtype, reference.device)
            labels = batch[1].detach().cpu().numpy() if isinstance(batch[1], torch.Tensor) else batch[1]
            y = as_labels(canonical_labels(labels, spec), spec, reference.device)
            n = num_rows(x)
            if y.shape[0] != n:
                raise ValueError(f"the batch of task {spec.name!r} has {n} rows of x but {y.shape[0]} labels")
            if n == 0:
                raise ValueError(f"the batch of task {spec.name!r} is empty")
            mask = None
            if len(batch) == 3:
                mask = torch.as_tensor(np.asarray(batch[2]) if not isinstance(batch[2], torch.Tensor) else batch[2])
                if mask.shape != (n,) or not bool(((mask == 0) | (mask == 1)).all()) or not bool(mask.any()):
                    raise ValueError(f"the row mask of task {spec.name!r} must be 0/1 of shape ({n},) with a 1, got {tuple(mask.shape)}")
                mask = mask.to(device=reference.device, dtype=reference.dtype)
            prepared.append(TaskBatch(index, spec, x, y, mask))
        return prepared

    def _forward_tasks(self, prepared: list[TaskBatch]) -> list[torch.Tensor]:
        return self.model.forward_tasks([b.x for b in prepared], [b.index for b in prepared])

    def _combine(self, losses: list[torch.Tensor], prepared: list[TaskBatch], task_weights, log_variances) -> torch.Tensor:
        weights = self.default_task_weights if task_weights is None else task_weights
        return combine_losses(self.weighting, losses, [b.index for b in prepared], weights, log_variances)

    def _reported(self, losses: dict, prepared: list[TaskBatch], task_weights) -> tuple[dict, torch.Tensor]:
        """The losses to report for this step and their combination (detached)."""
        losses = {name: loss.detach() for name, loss in losses.items()}
        log_var = None if self.log_variances is None else self.log_variances.detach()
        return losses, self._combine(list(losses.values()), prepared, task_weights, log_var)

    def run(self, prepared: list[TaskBatch], task_weights: torch.Tensor | None = None, record_norms: bool = False):
        """The step proper: (losses {name: tensor}, total tensor, layer gradient norms or None)."""
        self.optimizer.zero_grad(set_to_none=True)
        losses = {
            b.spec.name: task_loss(b.spec, logits, b.y, b.mask, b.denominator)
            for b, logits in zip(prepared, self._forward_tasks(prepared))
        }
        self._combine(list(losses.values()), prepared, task_weights, self._log_variances_in_graph()).backward()
        reported = self._reported(losses, prepared, task_weights)  # before the step moves the log-variances
        norms = None
        if record_norms:
            layers = list(self.model.trunk) + [self.model.heads[b.index] for b in prepared]
            norms = torch.stack([_layer_norm(layer.parameters()) for layer in layers])
        self.optimizer.step()
        return (*reported, norms)

    def _log_variances_in_graph(self):
        return self.log_variances

    def __call__(self, batches: Mapping[str, tuple], task_weights=None) -> dict[str, float]:
        if task_weights is not None:
            task_weights = torch.as_tensor(np.asarray(task_weights, dtype=np.float64)).to(self.default_task_weights)
            if task_weights.shape != self.default_task_weights.shape:
                raise ValueError(f"task_weights must have shape ({len(self.model.tasks)},), got {tuple(task_weights.shape)}")
        check_step_report(batches)
        losses, total, _ = self.run(self.prepare(batches), task_weights)
        return {**{name: float(loss) for name, loss in losses.items()}, TOTAL: float(total)}


def make_train_step(model: MultiTaskNetwork, optimizer: torch.optim.Optimizer, weighting="sum") -> TrainStep:
    """A step that trains ``model`` with ``optimizer`` on the weighted sum of its tasks' losses."""
    return TrainStep(model, optimizer, weighting)
