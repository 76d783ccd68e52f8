"""Per-task gradients on the shared trunk, their Gramian, and the aggregated update (mirrors jax_impl.jacobian).

With an aggregator (mtl_core.aggregation) the step differentiates every present task on its own
batch. In our steps a task's loss depends only on its own batch, so the T gradients cost the FLOPs
of one summed backward; what costs more is T trunk-gradient buffers and their (T, T) Gramian.

1. For each present task, in model order: its trunk output z_i (own forward pass), its loss L_i,
   dL_i/dz_i and dL_i/d(head_i).
2. The weighting's objectives f(L) (mtl_core.weighting) give a_i = df_i/dL_i, and dF/ds for the
   learnt log-variances s of uncertainty weighting (F = sum_i f_i, the reported total).
3. The Jacobian rows are a_i dL_i/d(trunk); the aggregator's weights w come from their Gramian.
   MGDA-UB (``representation=True``) takes the rows a_i dL_i/dz_i instead: the tasks' rows of z are
   disjoint batches, so that Gramian is diagonal, and no per-task trunk gradient is formed.
4. The trunk's update is sum_i w_i a_i dL_i/d(trunk); head i's is a_i dL_i/d(head_i), its own
   task's alone; s's is dF/ds.

Data-parallel ranks (torch_ref.distributed) reduce every per-task quantity before step 3 (the
per-task gradients, not their sum), so that every rank aggregates the global Jacobian.
"""

from __future__ import annotations

import torch

from torch_ref.aggregate import gramian_weights
from torch_ref.array_ops import TORCH_OPS
from torch_ref.losses import task_loss


def _global_mean(step, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The ranks' average of each tensor (one collective for all); the tensors themselves on one process."""
    if step.world_size == 1:
        return tensors
    flat = step.global_sum(torch.cat([t.reshape(-1) for t in tensors])) / step.world_size
    return [part.view_as(t) for part, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]


def _objective_scales(step, losses: torch.Tensor, prepared, task_weights):
    """(total F, a = dF/dL (n,), dF/ds or None) of the weighting's objectives at the global losses."""
    losses = losses.detach().clone().requires_grad_(True)
    log_var = None if step.log_variances is None else step.log_variances.detach().clone().requires_grad_(True)
    objectives = step.weighting.objectives(TORCH_OPS, losses, [b.index for b in prepared], task_weights, step.weighting_state, log_var)
    total = objectives.sum()
    inputs = [losses] + ([log_var] if log_var is not None else [])
    scales, *d_log_var = torch.autograd.grad(total, inputs)
    return total.detach(), scales, (d_log_var[0] if d_log_var else None)


def aggregated_backward(step, prepared, task_weights, order) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill ``.grad`` of the trunk, the present heads and the log-variances; return (global losses (n,), residual)."""
    model, trunk = step.model, list(step.model.trunk.parameters())
    features, losses, dz, dheads = [], [], [], []
    for b in prepared:
        z = model.trunk(b.x)
        leaf = z.detach().requires_grad_(True)
        head = list(model.heads[b.index].parameters())
        loss = task_loss(b.spec, model.heads[b.index](leaf), b.y, b.mask, b.denominator)
        g_z, *g_head = torch.autograd.grad(loss, [leaf, *head])
        features.append(z)
        losses.append(loss.detach())
        dz.append(g_z)
        dheads.append(g_head)
    losses = step.global_losses(torch.stack(losses))
    _, scales, d_log_var = _objective_scales(step, losses, prepared, task_weights)
    if getattr(step.aggregator, "representation", False):
        squares = step.global_sum(torch.stack([torch.sum(torch.square(g)) for g in dz])) / step.world_size**2
        weights, residual = gramian_weights(torch.diag(torch.square(scales) * squares), step.aggregator, order)
        local = [torch.autograd.grad(z, trunk, grad_outputs=w * a * g) for z, w, a, g in zip(features, weights, scales, dz)]
        direction = _global_mean(step, [sum(parts) for parts in zip(*local)])
    else:
        rows = [torch.autograd.grad(z, trunk, grad_outputs=a * g) for z, a, g in zip(features, scales, dz)]
        rows = _split(rows, _global_mean(step, [g for row in rows for g in row]))
        gramian = sum(stacked @ stacked.T for stacked in (torch.stack([g.reshape(-1) for g in leaves]) for leaves in zip(*rows)))
        weights, residual = gramian_weights(gramian, step.aggregator, order)
        direction = [sum(w * g for w, g in zip(weights, leaves)) for leaves in zip(*rows)]
    for parameter, grad in zip(trunk, direction):
        parameter.grad = grad
    head_grads = _split(dheads, _global_mean(step, [g for gs in dheads for g in gs]))
    for b, a, grads in zip(prepared, scales, head_grads):
        for parameter, grad in zip(model.heads[b.index].parameters(), grads):
            parameter.grad = a * grad
    if d_log_var is not None:
        step.log_variances.grad = d_log_var
    return losses, residual


def _split(groups: list[list[torch.Tensor]], flat: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``flat`` cut back into lists of the lengths of ``groups``."""
    out, start = [], 0
    for group in groups:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out
