"""The multi-task network: a shared trunk of Linear layers and one Linear head per task."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mtl_core.architecture import check_architecture
from mtl_core.tasks import TaskSpec, resolve_task_id
from torch_ref.inputs import as_network_input, concat_rows, num_rows
from torch_ref.layers import SparseLinear

ACTIVATION_FUNCTIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": nn.functional.gelu,  # exact (erf) GELU; jax_impl uses approximate=False to match
    "silu": nn.functional.silu,
}


class Trunk(nn.ModuleList):
    """The shared layers: (Linear -> activation) per hidden width; indexable like a list.

    A module of its own (not only a list) so that it can be wrapped, e.g. by DDP, without the heads.
    """

    def __init__(self, widths: Sequence[int], activation: str):
        super().__init__(
            [SparseLinear(widths[0], widths[1])]
            + [nn.Linear(fan_in, fan_out) for fan_in, fan_out in zip(widths[1:], widths[2:])]
        )
        self.activation = ACTIVATION_FUNCTIONS[activation]

    def forward(self, x) -> torch.Tensor:
        for layer in self:
            x = self.activation(layer(x))
        return x


class MultiTaskNetwork(nn.Module):
    """trunk (Linear -> activation, repeated) -> the head of ``task_id`` -> logits (n, num_outputs).

    With ``hidden_dims=(200,)`` and ``activation="sigmoid"`` this is the blog's network. A
    single-task network is the same class with one task.
    """

    def __init__(
        self,
        input_dim: int,
        tasks: Sequence[TaskSpec],
        hidden_dims: Sequence[int] = (200,),
        activation: str = "sigmoid",
    ):
        super().__init__()
        self.arch = check_architecture(tasks, hidden_dims, activation, input_dim)
        self.tasks = self.arch.tasks
        self.input_dim = self.arch.input_dim
        widths = (self.input_dim,) + self.arch.hidden_dims
        self.trunk = Trunk(widths, self.arch.activation)
        # A list, not a ModuleDict: task names may hold characters ModuleDict keys cannot ('.').
        self.heads = nn.ModuleList([nn.Linear(widths[-1], task.num_outputs) for task in self.tasks])

    def features(self, x) -> torch.Tensor:
        """The trunk's output (n, hidden_dims[-1]), shared by every head."""
        return self.trunk(x)

    def forward(self, x, task_id: int | str) -> torch.Tensor:
        """Logits (n, num_outputs) of one task for dense (n, input_dim) or sparse CSR input."""
        index = resolve_task_id(self.tasks, task_id)
        weight = self.trunk[0].weight
        return self.heads[index](self.features(as_network_input(x, self.input_dim, weight.dtype, weight.device)))

    def forward_tasks(self, inputs: Sequence, task_indices: Sequence[int], trunk=None, heads=None) -> list[torch.Tensor]:
        """Logits of several tasks' batches (already network inputs), one trunk pass for all rows.

        Stacking the rows means the first layer's dense weight gradient is built once per step,
        not once per task; the result is the same as calling ``forward`` per task. ``trunk`` and
        ``heads`` replace ``self.features`` and ``self.heads`` (e.g. by DDP wrappers of them).
        """
        trunk = self.features if trunk is None else trunk
        heads = self.heads if heads is None else heads
        stacked = concat_rows(list(inputs))
        if stacked is None:
            features = [trunk(x) for x in inputs]
        else:
            features = torch.split(trunk(stacked), [num_rows(x) for x in inputs])
        return [heads[index](f) for index, f in zip(task_indices, features)]
