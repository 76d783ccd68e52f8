"""Data-parallel training on ``torch.distributed`` with ``DistributedDataParallel``.

Every rank walks the same curriculum with the same seed (mtl_core draws it) and takes a contiguous
shard of each global batch, padded with masked rows so that all ranks hold as many rows. A rank
divides its shard's loss sum by (global rows / ranks): DDP averages gradients over ranks, so the
update is the one of the global batch's mean loss, ragged batches included.

Heads that a step leaves out: each head (and the trunk, and the learnt loss weighting) is its own
DDP module. A step calls only the wrappers of the tasks it trains, and a DDP module whose forward
was not called in an iteration expects no gradient, so no ``find_unused_parameters=True`` (a
traversal of the autograd graph on every step) is needed, and absent heads keep ``grad=None``: Adam
skips them, exactly as in one process. Every rank calls the same wrappers in the same order, since
every rank trains the same tasks in each step.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import scipy.sparse as sp
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from torch_ref.optimizer import LazyAdam
from torch_ref.step import TaskBatch, TrainStep


def data_parallel_world() -> tuple[int, int] | None:
    """(rank, world size) when torch.distributed is initialised with several ranks, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist.get_rank(), dist.get_world_size()
    return None


class _LogVariances(nn.Module):
    """The learnt log-variances of uncertainty weighting as a module, for DDP."""

    def __init__(self, log_var: nn.Parameter):
        super().__init__()
        self.log_var = log_var

    def forward(self):
        return self.log_var


def shard(X: sp.csr_matrix, y: np.ndarray, rank: int, world: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, float]:
    """This rank's rows of a global batch, padded to ceil(n / world) rows: (X, y, mask, denominator)."""
    n = X.shape[0]
    per_rank = math.ceil(n / world)
    start, stop = min(rank * per_rank, n), min((rank + 1) * per_rank, n)
    padding = per_rank - (stop - start)
    rows = sp.vstack([X[start:stop], sp.csr_matrix((padding, X.shape[1]), dtype=X.dtype)], format="csr")
    labels = np.concatenate([y[start:stop], np.zeros((padding,) + y.shape[1:], y.dtype)])
    mask = (np.arange(per_rank) < stop - start).astype(np.float32)
    return rows, labels, mask, n / world


class DistributedTrainStep(TrainStep):
    """TrainStep whose forward runs through DDP wrappers and whose reported losses are global."""

    def __init__(self, model, optimizer, weighting="sum", aggregator=None):
        if isinstance(optimizer, LazyAdam):  # DDP all-reduces dense gradients; the ranks' touched rows differ
            raise ValueError("lazy Adam does not support data-parallel training (DistributedDataParallel): use torch_ref.adam")
        super().__init__(model, optimizer, weighting, aggregator)
        self.world_size = dist.get_world_size()
        device = model.trunk[0].weight.device
        device_ids = [device.index] if device.type == "cuda" else None
        wrap = lambda module: DistributedDataParallel(module, device_ids=device_ids)  # noqa: E731
        self.trunk = wrap(model.trunk)
        self.heads = [wrap(head) for head in model.heads]
        self.weighting_module = wrap(_LogVariances(self.log_variances)) if self.log_variances is not None else None

    def _forward_tasks(self, prepared: list[TaskBatch]) -> list[torch.Tensor]:
        return self.model.forward_tasks([b.x for b in prepared], [b.index for b in prepared], self.trunk, self.heads)

    def _log_variances_in_graph(self):
        return None if self.weighting_module is None else self.weighting_module()

    def global_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum over the ranks (a copy: the input is left as it was)."""
        tensor = tensor.clone()
        dist.all_reduce(tensor)
        return tensor


@contextlib.contextmanager
def stop_all_ranks_on_error(world: tuple[int, int] | None):
    """Make a failure on one rank end the run on every rank, promptly and with a clear message.

    The failing rank tears its process group down, so that the others' pending collectives fail
    at once (gloo and NCCL report the closed connection) instead of waiting for the group's timeout.
    """
    if world is None:
        yield
        return
    try:
        yield
    except RuntimeError as error:  # collectives report a lost peer as RuntimeError
        if dist.is_initialized():
            dist.destroy_process_group()
        raise RuntimeError(
            f"data-parallel fit stopped on rank {world[0]} of {world[1]}: {error} "
            "(when another rank failed, its own error says why)"
        ) from error
    except BaseException:
        if dist.is_initialized():
            dist.destroy_process_group()
        raise
