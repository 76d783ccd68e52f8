"""Per-task gradients on the shared trunk, their Gramian, and the aggregated update (mirrors jax_impl.jacobian).

With an aggregator (mtl_core.aggregation) the step differentiates every present task on its own
batch. A task's loss depends only on its own batch, so the T gradients cost the FLOPs of one
summed backward; what costs more is keeping them apart.

1. One pass of the first trunk layer over all the step's rows gives each task's pre-activation
   h_i; the later layers and the task's head run on h_i alone: its loss L_i, dL_i/dz_i at the
   trunk's output z_i, and dL_i/d(head_i).
2. The weighting's objectives f(L) (mtl_core.weighting) give a_i = df_i/dL_i, and dF/ds for the
   learnt log-variances s of uncertainty weighting (F = sum_i f_i, the reported total).
3. Back through the later layers with a_i dL_i/dz_i: their gradient rows, and Δ_i = the task's
   gradient at h_i. The first layer's rows, X_iᵀ Δ_i, would be one (V, H) array per task (most of
   it zeros for sparse bag-of-words rows); their inner products are the blocks of sum(K ⊙ ΔΔᵀ)
   with K = X Xᵀ (N, N), so the Gramian of all the rows is formed without them.
   MGDA-UB (``representation=True``) takes the rows a_i dL_i/dz_i instead: the tasks' rows of z are
   disjoint batches, so that Gramian is diagonal.
4. With the aggregator's weights w: the later layers' update is sum_i w_i (their rows), the first
   layer's is one backward pass of the stacked w_i Δ_i (one (V, H) gradient, as the summed step;
   with lazy Adam the step runs this inside the layer's ``sparse_gradient()``: the touched rows only);
   head i's is a_i dL_i/d(head_i), its own task's alone; s's is dF/ds.

Data-parallel ranks (torch_ref.distributed) hold a shard of every task's rows, and K pairs rows of
different ranks: there the first layer's rows are formed, and every per-task quantity is reduced
over the ranks before step 4 (the per-task gradients, not their sum), so that every rank aggregates
the global Jacobian.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
import torch

from mtl_core.sparse import row_kernel as host_row_kernel
from torch_ref.aggregate import gramian_weights
from torch_ref.array_ops import TORCH_OPS
from torch_ref.inputs import SparseRows, concat_rows, num_rows
from torch_ref.losses import task_loss


def _global_mean(step, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """The ranks' average of each tensor (one collective for all); the tensors themselves on one process."""
    if step.world_size == 1 or not tensors:
        return tensors
    flat = step.global_sum(torch.cat([t.reshape(-1) for t in tensors])) / step.world_size
    return [part.view_as(t) for part, t in zip(torch.split(flat, [t.numel() for t in tensors]), tensors)]


def _split(groups: list[list[torch.Tensor]], flat: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """``flat`` cut back into lists of the lengths of ``groups``."""
    out, start = [], 0
    for group in groups:
        out.append(flat[start : start + len(group)])
        start += len(group)
    return out


def _objective_scales(step, losses: torch.Tensor, prepared, task_weights):
    """(a = dF/dL (n,), dF/ds or None) of the weighting's objectives at the global losses."""
    losses = losses.detach().clone().requires_grad_(True)
    log_var = None if step.log_variances is None else step.log_variances.detach().clone().requires_grad_(True)
    objectives = step.weighting.objectives(TORCH_OPS, losses, [b.index for b in prepared], task_weights, step.weighting_state, log_var)
    inputs = [losses] + ([log_var] if log_var is not None else [])
    scales, *d_log_var = torch.autograd.grad(objectives.sum(), inputs)
    return scales, (d_log_var[0] if d_log_var else None)


def _csr(x: SparseRows, num_features: int, dtype) -> torch.Tensor:
    """The rows as a torch sparse CSR tensor (n, V) (its invariants hold by construction)."""
    starts = torch.cat([x.offsets, x.offsets.new_tensor([x.indices.numel()])])
    with warnings.catch_warnings():  # torch warns once that sparse CSR support is in beta
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(starts, x.indices, x.values.to(dtype), (x.num_rows, num_features), check_invariants=False)


def _dense(x, num_features: int, dtype) -> torch.Tensor:
    return _csr(x, num_features, dtype).to_dense() if isinstance(x, SparseRows) else x.to(dtype)


def _host_rows(x, num_features: int):
    """CPU rows as scipy CSR (SparseRows, no copy) or numpy (dense), for mtl_core.sparse.row_kernel."""
    if not isinstance(x, SparseRows):
        return x.detach().numpy()
    starts = np.append(x.offsets.numpy(), x.indices.numel())
    return sp.csr_matrix((x.values.numpy(), x.indices.numpy(), starts), shape=(x.num_rows, num_features))


def row_kernel(inputs: list, num_features: int, dtype) -> torch.Tensor:
    """K = X Xᵀ (N, N) of the present tasks' rows stacked, for dense and sparse rows alike: scipy's
    sparse product on the CPU (torch's CPU sparse-sparse product keeps ~1 MiB per call), cuSPARSE's
    on a GPU (a dense product when some batch is dense)."""
    stacked = concat_rows(inputs)
    first = inputs[0].values if isinstance(inputs[0], SparseRows) else inputs[0]
    if first.device.type == "cpu":
        return torch.from_numpy(host_row_kernel([_host_rows(x, num_features) for x in inputs], np.float64)).to(dtype)
    if isinstance(stacked, SparseRows):
        rows = _csr(stacked, num_features, dtype)
        return (rows @ rows.t()).to_dense()
    dense = torch.cat([_dense(x, num_features, dtype) for x in inputs])
    return dense @ dense.T


def _gramian(rows: list[list[torch.Tensor]]) -> torch.Tensor:
    """G (n, n) of n gradient lists: per parameter, the stacked rows times their transpose."""
    gramian = 0.0
    for leaves in zip(*rows):
        stacked = torch.stack([leaf.reshape(-1) for leaf in leaves])  # (n, parameter size)
        gramian = gramian + stacked @ stacked.T
    return gramian


def _weighted_sum(weights, rows: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    return [sum(w * g for w, g in zip(weights, leaves)) for leaves in zip(*rows)]


def _first_layer(model, inputs: list) -> list[torch.Tensor]:
    """Each task's first-layer pre-activation, from one pass over all the rows when the inputs stack."""
    stacked = concat_rows(inputs)
    if stacked is None:  # dense and sparse batches mixed: one pass per task
        return [model.trunk[0](x) for x in inputs]
    return list(torch.split(model.trunk[0](stacked), [num_rows(x) for x in inputs]))


def _later_layers(model, first: torch.Tensor) -> torch.Tensor:
    z = model.trunk.activation(first)
    for layer in list(model.trunk)[1:]:
        z = model.trunk.activation(layer(z))
    return z


def aggregated_backward(step, prepared, task_weights, order) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill ``.grad`` of the trunk, the present heads and the log-variances; return (global losses (n,), residual)."""
    model = step.model
    layers = list(model.trunk)
    first_params, later_params = list(layers[0].parameters()), [p for layer in layers[1:] for p in layer.parameters()]
    inputs = [b.x for b in prepared]
    firsts = _first_layer(model, inputs)
    leaves, outputs, losses, dz, dheads = [], [], [], [], []
    for b, first in zip(prepared, firsts):
        leaf = first.detach().requires_grad_(True)
        z = _later_layers(model, leaf)
        z_leaf = z.detach().requires_grad_(True)
        head = list(model.heads[b.index].parameters())
        loss = task_loss(b.spec, model.heads[b.index](z_leaf), b.y, b.mask, b.denominator)
        g_z, *g_head = torch.autograd.grad(loss, [z_leaf, *head])
        leaves.append(leaf)
        outputs.append(z)
        losses.append(loss.detach())
        dz.append(g_z)
        dheads.append(g_head)
    losses = step.global_losses(torch.stack(losses))
    scales, d_log_var = _objective_scales(step, losses, prepared, task_weights)
    representation = getattr(step.aggregator, "representation", False)
    if representation:
        squares = step.global_sum(torch.stack([torch.sum(torch.square(g)) for g in dz])) / step.world_size**2
        weights, residual = gramian_weights(torch.diag(torch.square(scales) * squares), step.aggregator, order)
        scales_out = weights * scales
    else:
        scales_out = scales
    backs = [torch.autograd.grad(z, [*later_params, leaf], grad_outputs=a * g) for z, leaf, a, g in zip(outputs, leaves, scales_out, dz)]
    later_rows, deltas = [list(back[:-1]) for back in backs], [back[-1] for back in backs]
    if representation:
        later_grad = _global_mean(step, [sum(leaves) for leaves in zip(*later_rows)]) if later_rows[0] else []
    elif step.world_size == 1:
        delta = torch.cat(deltas)  # (N, hidden_dims[0])
        sizes = [d.shape[0] for d in deltas]
        owner = torch.repeat_interleave(torch.eye(len(prepared), dtype=delta.dtype, device=delta.device), torch.tensor(sizes, device=delta.device), dim=0)
        kernel_part = owner.T @ (row_kernel(inputs, model.input_dim, delta.dtype) * (delta @ delta.T)) @ owner
        bias_rows = owner.T @ delta  # (n, hidden_dims[0]): the first layer's bias gradient of each task
        gramian = kernel_part + bias_rows @ bias_rows.T + (_gramian(later_rows) if later_rows[0] else 0.0)
        weights, residual = gramian_weights(gramian, step.aggregator, order)
        later_grad = _weighted_sum(weights, later_rows)
        deltas = [w * d for w, d in zip(weights, deltas)]
    else:
        first_rows = [list(torch.autograd.grad(first, first_params, grad_outputs=d, retain_graph=True)) for first, d in zip(firsts, deltas)]
        rows = _split([f + l for f, l in zip(first_rows, later_rows)], _global_mean(step, [g for f, l in zip(first_rows, later_rows) for g in f + l]))
        weights, residual = gramian_weights(_gramian(rows), step.aggregator, order)
        direction = _weighted_sum(weights, rows)
        first_grad, later_grad = direction[: len(first_params)], direction[len(first_params) :]
    if representation or step.world_size == 1:
        first_grad = _global_mean(step, list(torch.autograd.grad(firsts, first_params, grad_outputs=deltas)))
    for parameter, grad in zip(first_params + later_params, list(first_grad) + list(later_grad)):
        parameter.grad = grad
    head_grads = _split(dheads, _global_mean(step, [g for gs in dheads for g in gs]))
    for b, a, grads in zip(prepared, scales, head_grads):
        for parameter, grad in zip(model.heads[b.index].parameters(), grads):
            parameter.grad = a * grad
    if d_log_var is not None:
        step.log_variances.grad = d_log_var
    return losses, residual
