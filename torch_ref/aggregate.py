"""Gradient aggregation in PyTorch: the maths is mtl_core.aggregation's, run eagerly by TORCH_OPS."""

from __future__ import annotations

import numpy as np
import torch

from mtl_core.aggregation import check_inputs, check_order
from torch_ref.array_ops import TORCH_OPS


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def gramian_weights(gramian, aggregator, order=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(weights (T,), residual ()) of ``aggregator`` (an Aggregator or its name) for a Gramian (T, T).

    The weights are constants (computed under no_grad); ``residual > aggregator.tol`` means the solver
    did not converge (NaN: the Gramian was not finite). order: PCGrad's (T, T-1) task order, else None.
    """
    gramian = torch.as_tensor(gramian)
    aggregator = check_inputs(aggregator, tuple(gramian.shape), _dtype_name(gramian), "gramian")
    if order is not None:
        order = order.cpu().numpy() if isinstance(order, torch.Tensor) else np.asarray(order)
        check_order(order, gramian.shape[0])
    with torch.no_grad():
        return aggregator.weights(gramian, TORCH_OPS, order)


def aggregate(jacobian, aggregator, order=None) -> torch.Tensor:
    """The direction d = wᵀJ (P,) of the rows of ``jacobian`` (T, P); differentiable in J, w held constant."""
    jacobian = torch.as_tensor(jacobian)
    check_inputs(aggregator, tuple(jacobian.shape), _dtype_name(jacobian), "jacobian")
    with torch.no_grad():
        weights, _ = gramian_weights(jacobian @ jacobian.T, aggregator, order)
    return weights @ jacobian
