"""torch_ref <-> the canonical numpy layout (mtl_core.layout).

The one place where PyTorch's layouts are transposed: ``nn.Linear.weight`` is (out, in) and is
transposed; ``SparseLinear.weight`` is already (in, out) and is copied as it is.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from mtl_core.layout import canonical_shapes, check_params
from torch_ref.model import MultiTaskNetwork


def _kernel_to_canonical(layer: nn.Module) -> torch.Tensor:
    return layer.weight.T if isinstance(layer, nn.Linear) else layer.weight


def _named_layers(model: MultiTaskNetwork) -> list[tuple[str, nn.Module]]:
    return [(f"trunk.{i}", layer) for i, layer in enumerate(model.trunk)] + [
        (f"heads.{task.name}", head) for task, head in zip(model.tasks, model.heads)
    ]


def export_params(model: MultiTaskNetwork) -> dict[str, np.ndarray]:
    """The model's weights as canonical numpy arrays (copies, in the model's float dtype)."""
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
    params = {}
    with torch.no_grad():
        for name, layer in _named_layers(model):
            params[f"{name}.kernel"] = _kernel_to_canonical(layer).detach().cpu().numpy().copy()
            params[f"{name}.bias"] = layer.bias.detach().cpu().numpy().copy()
    return params


def import_params(model: MultiTaskNetwork, params: Mapping[str, np.ndarray]) -> None:
    """Load canonical weights into ``model`` in place, after checking every name, shape and dtype."""
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
    dtype = torch.empty((), dtype=model.trunk[0].weight.dtype).numpy().dtype
    checked = check_params(params, canonical_shapes(model.arch), dtype=dtype)
    with torch.no_grad():
        for name, layer in _named_layers(model):
            kernel = torch.from_numpy(np.ascontiguousarray(checked[f"{name}.kernel"]))
            layer.weight.copy_(kernel.T if isinstance(layer, nn.Linear) else kernel)
            layer.bias.copy_(torch.from_numpy(checked[f"{name}.bias"]))
