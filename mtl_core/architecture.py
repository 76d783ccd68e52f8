"""The network's shape: trunk widths, activation, and the names of its layers.

Both backends build the same network from these checked values, so the twins cannot drift apart
in what they accept.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Sequence

from mtl_core.tasks import TaskSpec, check_tasks

ACTIVATIONS = ("sigmoid", "tanh", "relu", "gelu", "silu")


def _positive_int(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}")
    return int(value)


@dataclass(frozen=True)
class Architecture:
    """Checked hyper-parameters of a multi-task network (``input_dim`` is None until known)."""

    tasks: tuple[TaskSpec, ...]
    hidden_dims: tuple[int, ...]
    activation: str
    input_dim: int | None = None

    def with_input_dim(self, input_dim: int) -> "Architecture":
        """The same architecture for ``input_dim`` features (checked)."""
        return replace(self, input_dim=_positive_int(input_dim, "input_dim"))

    @property
    def layer_names(self) -> tuple[str, ...]:
        """Names of the trunk layers and heads, in the canonical layout's spelling."""
        return tuple(f"trunk.{i}" for i in range(len(self.hidden_dims))) + tuple(
            f"heads.{t.name}" for t in self.tasks
        )


def check_architecture(
    tasks: Sequence[TaskSpec],
    hidden_dims: Sequence[int],
    activation: str,
    input_dim: int | None = None,
) -> Architecture:
    """Validate the constructor arguments shared by both backends' ``MultiTaskNetwork``."""
    tasks = check_tasks(tasks)
    if isinstance(hidden_dims, (str, bytes)) or not isinstance(hidden_dims, Sequence):
        raise TypeError(f"hidden_dims must be a sequence of ints, got {hidden_dims!r}")
    if len(hidden_dims) == 0:
        raise ValueError("hidden_dims must name at least one trunk layer (the tasks share it), got ()")
    dims = tuple(_positive_int(d, f"hidden_dims[{i}]") for i, d in enumerate(hidden_dims))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    if input_dim is not None:
        input_dim = _positive_int(input_dim, "input_dim")
    return Architecture(tasks=tasks, hidden_dims=dims, activation=activation, input_dim=input_dim)
