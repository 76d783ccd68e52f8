"""One training step: every task's loss on its batch, the weighting's objectives, one optimiser step."""

from __future__ import annotations

import contextlib
from typing import Mapping, NamedTuple

import numpy as np
import torch

from mtl_core.aggregation import resolve_aggregator
from mtl_core.batches import check_batches
from mtl_core.plans import draw_step, needs_key
from mtl_core.tasks import SOLVER_RESIDUAL, TOTAL, TaskSpec, check_step_report
from mtl_core.weighting import check_task_weights, resolve_weighting
from torch_ref.array_ops import TORCH_OPS
from torch_ref.inputs import as_labels, as_network_input, num_rows, to_device
from torch_ref.jacobian import aggregated_backward
from torch_ref.losses import task_loss
from torch_ref.model import MultiTaskNetwork
from torch_ref.optimizer import LazyAdam, holds_parameters_of, touched_rows

LOG_VARIANCE_GROUP = "weighting.log_var"
WEIGHTING_STATE_GROUP = "weighting.state."  # + key: a weighting's state, kept in the optimizer


class TaskBatch(NamedTuple):
    """One task's batch as tensors: network input, labels, optional 0/1 row mask and loss denominator."""

    index: int
    spec: TaskSpec
    x: object
    y: torch.Tensor
    mask: torch.Tensor | None = None
    denominator: float | None = None


def _flat_gradient(grad: torch.Tensor) -> torch.Tensor:
    """A gradient's entries as one vector; a sparse one's rows summed per index first (lazy Adam's kernel)."""
    return (touched_rows(grad)[1] if grad.is_sparse else grad).reshape(-1)


def _layer_norm(parameters) -> torch.Tensor:
    """L2 norm of a layer's whole gradient (kernel and bias); a BLAS dot is the fastest reduction."""
    flat = [_flat_gradient(p.grad) for p in parameters if p.grad is not None]
    return torch.stack([torch.dot(g, g) for g in flat]).sum().sqrt()


def _as_numpy(value) -> np.ndarray:
    """A numpy copy of a tensor on any device, even one that requires grad; other values as arrays."""
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


class TrainStep:
    """Callable: ``step({task name: (x, y) or (x, y, row_mask)}) -> {task name: loss, "total": loss}``.

    Tasks absent from the dict get no gradient, so their heads (and their Adam state) are left
    untouched, as ``optimizer.zero_grad(set_to_none=True)`` makes ``torch.optim.Adam`` do.
    With ``weighting="uncertainty"`` the learnable log-variances are added to ``optimizer`` as a
    param group named "weighting.log_var" (or found there when the optimizer already has one).
    A weighting with state between steps (FAMO) keeps it in ``step.weighting_state``, whose tensors
    ride in ``optimizer`` as param groups "weighting.state.{key}" that never get a gradient (Adam
    leaves them alone): the optimizer a fit is resumed with, or a checkpoint, carries them. With an
    ``aggregator`` the trunk's gradient combines the tasks' own gradients (torch_ref.jacobian).
    A direct call draws its random choices (RLW's weights, PCGrad's order) under the key
    ``(step.steps_done,)`` unless given one, as jax_impl's ``step.apply`` does. With a lazy Adam
    (torch_ref.lazy_adam) the first layer's kernel gets a sparse gradient of the rows the step touches.
    """

    world_size = 1  # data-parallel ranks (torch_ref.distributed)

    def __init__(self, model: MultiTaskNetwork, optimizer: torch.optim.Optimizer, weighting="sum", aggregator=None):
        if not isinstance(model, MultiTaskNetwork):
            raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if isinstance(optimizer, LazyAdam) and optimizer.kernel is not model.trunk[0].weight:
            raise ValueError("the lazy Adam was built for another model: build it with torch_ref.lazy_adam(model)")
        if not holds_parameters_of(optimizer, model):
            raise ValueError(
                "the optimizer holds none of the model's parameters, so the step would train nothing: "
                "build it from this model, e.g. torch_ref.adam(model)"
            )
        self.model, self.optimizer = model, optimizer
        self.weighting = resolve_weighting(weighting, model.tasks)
        self.aggregator = resolve_aggregator(aggregator)
        self.steps_done = 0
        reference = model.trunk[0].weight
        self.default_task_weights = torch.tensor(
            self.weighting.initial_task_weights(), dtype=reference.dtype, device=reference.device
        )
        self.log_variances = self._log_variances(reference) if self.weighting.learnable else None
        self.weighting_state = {
            key: self._optimizer_tensor(WEIGHTING_STATE_GROUP + key, lambda value=value: torch.as_tensor(value).to(reference))
            for key, value in self.weighting.init_state().items()
        }

    def _optimizer_tensor(self, name: str, make) -> torch.Tensor:
        """The one tensor of the optimizer's param group ``name``, added from ``make()`` when it has none."""
        for group in self.optimizer.param_groups:
            if group.get("name") == name:
                (tensor,) = group["params"]
                return tensor
        tensor = make()
        self.optimizer.add_param_group({"params": [tensor], "name": name})
        return tensor

    def _log_variances(self, reference: torch.Tensor) -> torch.nn.Parameter:
        return self._optimizer_tensor(
            LOG_VARIANCE_GROUP, lambda: torch.nn.Parameter(torch.zeros(len(self.model.tasks), dtype=reference.dtype, device=reference.device))
        )

    def prepare(self, batches: Mapping[str, tuple]) -> list[TaskBatch]:
        """Check a user's batch dict and turn it into tensors, in the model's task order."""
        reference = self.model.trunk[0].weight

        def network_input(x):
            x = as_network_input(x, self.model.input_dim, reference.dtype, reference.device)
            return x, num_rows(x)

        return [
            TaskBatch(
                b.index, b.spec, b.x, as_labels(b.y, b.spec, reference.device),
                None if b.mask is None else to_device(torch.from_numpy(b.mask), reference.device, reference.dtype),
            )
            for b in check_batches(batches, self.model.tasks, network_input, _as_numpy)
        ]

    def _forward_tasks(self, prepared: list[TaskBatch]) -> list[torch.Tensor]:
        return self.model.forward_tasks([b.x for b in prepared], [b.index for b in prepared])

    def _losses(self, prepared: list[TaskBatch], logits: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([task_loss(b.spec, out, b.y, b.mask, b.denominator) for b, out in zip(prepared, logits)])

    def _objectives(self, losses: torch.Tensor, prepared: list[TaskBatch], task_weights, log_variances) -> torch.Tensor:
        weights = self.default_task_weights if task_weights is None else task_weights
        index = [b.index for b in prepared]
        return self.weighting.objectives(TORCH_OPS, losses, index, weights, self.weighting_state, log_variances)

    def global_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over data-parallel ranks (the tensor itself on one process)."""
        return tensor

    def global_losses(self, losses: torch.Tensor) -> torch.Tensor:
        """The losses of the whole batch: each rank's scaled share, averaged over the ranks."""
        return losses if self.world_size == 1 else self.global_sum(losses) / self.world_size

    def run(self, prepared: list[TaskBatch], task_weights: torch.Tensor | None = None, record_norms: bool = False, order=None):
        """The step proper: (losses {name: tensor}, total, layer gradient norms or None, solver residual or None).

        ``order``: PCGrad's (n, n - 1) task order of the present tasks (mtl_core.plans).
        """
        self.optimizer.zero_grad(set_to_none=True)
        residual = None
        total = None
        with self._kernel_gradient():
            if self.aggregator is None:
                losses = self._losses(prepared, self._forward_tasks(prepared))
                objectives = self._objectives(losses, prepared, task_weights, self._log_variances_in_graph())
                objectives.sum().backward()
                reported = self.global_losses(losses.detach())
                total = objectives.detach().sum() if self.world_size == 1 else None
            else:
                weights = self.default_task_weights if task_weights is None else task_weights
                reported, residual = aggregated_backward(self, prepared, weights, order)
        if total is None:  # the objectives at the global losses, before the step moves the log-variances
            log_var = None if self.log_variances is None else self.log_variances.detach()
            total = self._objectives(reported, prepared, task_weights, log_var).sum()
        norms = None
        if record_norms:
            layers = list(self.model.trunk) + [self.model.heads[b.index] for b in prepared]
            norms = torch.stack([_layer_norm(layer.parameters()) for layer in layers])
        self.optimizer.step()
        if self.weighting.stateful:  # e.g. FAMO: compares the losses before and after the update
            with torch.no_grad():
                after = self.global_losses(self._losses(prepared, self.model.forward_tasks([b.x for b in prepared], [b.index for b in prepared])))
                new_state = self.weighting.update_state(TORCH_OPS, self.weighting_state, [b.index for b in prepared], reported, after)
                for key, value in new_state.items():
                    self.weighting_state[key].copy_(value)
        self.steps_done += 1
        return dict(zip((b.spec.name for b in prepared), reported)), total, norms, residual

    def _log_variances_in_graph(self):
        return self.log_variances

    def _kernel_gradient(self):
        """Where the gradients are made: lazy Adam reads the first layer's kernel gradient as sparse rows."""
        return self.model.trunk[0].sparse_gradient() if isinstance(self.optimizer, LazyAdam) else contextlib.nullcontext()

    def __call__(self, batches: Mapping[str, tuple], task_weights=None, key=None) -> dict[str, float]:
        """One step; returns each present task's loss and "total" (and "solver_residual" with an aggregator)."""
        if task_weights is not None:
            task_weights = torch.as_tensor(check_task_weights(_as_numpy(task_weights), len(self.model.tasks))).to(self.default_task_weights)
        check_step_report(batches, self.aggregator)
        prepared = self.prepare(batches)
        order = None
        if needs_key(self.weighting, self.aggregator):
            key = (self.steps_done,) if key is None else tuple(key)
            base = self.weighting.initial_task_weights() if task_weights is None else task_weights.cpu().numpy()
            draw = draw_step(self.weighting, self.aggregator, base, key, len(prepared))
            if task_weights is None:
                task_weights = torch.as_tensor(draw.task_weights).to(self.default_task_weights)
            order = None if draw.order is None else torch.as_tensor(draw.order)
        losses, total, _, residual = self.run(prepared, task_weights, order=order)
        report = {**{name: float(loss) for name, loss in losses.items()}, TOTAL: float(total)}
        return report if residual is None else {**report, SOLVER_RESIDUAL: float(residual)}


def make_train_step(model: MultiTaskNetwork, optimizer: torch.optim.Optimizer, weighting="sum", aggregator=None) -> TrainStep:
    """A step that trains ``model`` with ``optimizer`` on its tasks' losses combined by ``weighting``.

    ``aggregator``: None (the summed loss) or a gradient-conflict method of mtl_core.aggregation (an
    instance or its name): per-task gradients on the trunk, combined by it (torch_ref.jacobian).
    """
    return TrainStep(model, optimizer, weighting, aggregator)
