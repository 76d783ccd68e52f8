"""Per-task losses: the mean over a batch's (unmasked) rows."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mtl_core.tasks import TaskSpec


def example_losses(spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Loss of each row (n,): BCE-with-logits, cross-entropy or squared error, mean over outputs."""
    if spec.kind == "multiclass":
        return F.cross_entropy(logits, y, reduction="none")
    y = y.to(logits.dtype)
    if spec.kind == "regression":
        return F.mse_loss(logits, y, reduction="none").mean(dim=1)
    return F.binary_cross_entropy_with_logits(logits, y, reduction="none").mean(dim=1)


def task_loss(
    spec: TaskSpec, logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None, denominator: float | None = None
) -> torch.Tensor:
    """The batch's mean loss; with a 0/1 row ``mask``, the mean over the rows marked 1.

    ``denominator`` replaces the count of rows: a data-parallel rank holding a shard of a global
    batch divides its sum by (global rows / ranks), so that DDP's gradient average is the mean.
    """
    losses = example_losses(spec, logits, y)
    if mask is None and denominator is None:
        return losses.mean()
    if mask is not None:
        losses = losses * mask.to(losses.dtype)
    return losses.sum() / (mask.sum() if denominator is None else denominator)
