"""The multi-task network in Flax linen: a shared trunk and one head per task, picked statically."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtl_core.architecture import check_architecture
from mtl_core.tasks import TaskSpec, resolve_task_id
from mtl_core.sparse import PaddedRows
from jax_impl.inputs import concat_rows, row_bounds
from jax_impl.layers import Linear

ACTIVATION_FUNCTIONS = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),  # PyTorch's default GELU is the exact one
    "silu": jax.nn.silu,
}


class Trunk(nn.Module):
    """Linear -> activation, once per entry of ``hidden_dims``; params under "0", "1", ..."""

    hidden_dims: tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, x):
        if not isinstance(x, PaddedRows):  # what a direct ``apply`` may be given (the steps check theirs)
            if not hasattr(x, "ndim"):
                raise TypeError(f"input must be an array (n, input_dim) or PaddedRows, got {type(x).__name__}")
            if x.ndim != 2:
                raise ValueError(f"input must have shape (n, input_dim), got {x.shape}")
        act = ACTIVATION_FUNCTIONS[self.activation]
        for i, width in enumerate(self.hidden_dims):
            x = act(Linear(width, name=str(i))(x))
        return x


class Heads(nn.Module):
    """One Linear head per task, its params under the task's name."""

    tasks: tuple[TaskSpec, ...]

    @nn.compact
    def __call__(self, features, index: int):
        heads = [Linear(task.num_outputs, name=task.name) for task in self.tasks]
        if self.is_initializing():
            # Flax creates only the modules a call reaches: touch every head so init makes them all.
            return [head(features) for head in heads][index]
        return heads[index](features)


class MultiTaskNetwork(nn.Module):
    """``apply(params, x, task_id=...)`` -> logits (n, num_outputs) of that task's head.

    ``task_id`` (an index or a task name) is resolved at trace time, so under ``jax.jit`` it must
    be static, and each task compiles its own path. ``init`` creates every head.
    """

    tasks: Sequence[TaskSpec]
    hidden_dims: Sequence[int] = (200,)
    activation: str = "sigmoid"

    def __post_init__(self):
        arch = check_architecture(self.tasks, self.hidden_dims, self.activation)
        # Tuples, so the module stays hashable (a static argument of jax.jit).
        object.__setattr__(self, "tasks", arch.tasks)
        object.__setattr__(self, "hidden_dims", arch.hidden_dims)
        super().__post_init__()

    @property
    def arch(self):
        return check_architecture(self.tasks, self.hidden_dims, self.activation)

    def setup(self):
        self.trunk = Trunk(tuple(self.hidden_dims), self.activation)
        self.heads = Heads(tuple(self.tasks))

    def __call__(self, x, task_id: int | str | None = None):
        if task_id is None:
            if not self.is_initializing():
                raise ValueError("task_id is required: pass the index or name of the task whose logits you want")
            task_id = 0
        return self.heads(self.trunk(x), resolve_task_id(self.tasks, task_id))

    def features(self, x):
        """The trunk's output (n, hidden_dims[-1]), shared by every head."""
        return self.trunk(x)

    def head(self, features, task_id: int | str):
        """Logits (n, num_outputs) of one task's head on trunk features; needs only that head's params."""
        return self.heads(features, resolve_task_id(self.tasks, task_id))

    def forward_tasks(self, inputs: Sequence, task_ids: Sequence[int | str]) -> list:
        """Logits of several tasks' batches with one trunk pass over all their rows.

        The first layer's kernel gradient (dense (input_dim, hidden)) is then built once per step,
        not once per task; the result is the same as one ``__call__`` per task.
        """
        indices = [resolve_task_id(self.tasks, t) for t in task_ids]
        stacked = concat_rows(list(inputs))
        if stacked is None:
            features = [self.trunk(x) for x in inputs]
        else:
            features = jnp.split(self.trunk(stacked), row_bounds(list(inputs)))
        return [self.heads(f, i) for f, i in zip(features, indices)]
