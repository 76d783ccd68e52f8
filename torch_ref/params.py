"""torch_ref <-> the canonical numpy layout (mtl_core.layout).

The one place where PyTorch's layouts are transposed: ``nn.Linear.weight`` is (out, in) and is
transposed; ``SparseLinear.weight`` is already (in, out) and is copied as it is. Anything stored
per parameter (weights, Adam's moments) goes through ``canonical_parameters``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
from torch import nn

from mtl_core.layout import canonical_shapes, check_params
from torch_ref.model import MultiTaskNetwork


def _check_model(model) -> None:
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")


def canonical_parameters(model: MultiTaskNetwork) -> dict[str, tuple[nn.Parameter, bool]]:
    """{canonical name: (parameter, stored transposed?)} for every weight of the model."""
    layers = [(f"trunk.{i}", layer) for i, layer in enumerate(model.trunk)]
    layers += [(f"heads.{task.name}", head) for task, head in zip(model.tasks, model.heads)]
    parameters = {}
    for name, layer in layers:
        parameters[f"{name}.kernel"] = (layer.weight, isinstance(layer, nn.Linear))
        parameters[f"{name}.bias"] = (layer.bias, False)
    return parameters


def to_canonical(tensor: torch.Tensor, transposed: bool, copy: bool = True) -> np.ndarray:
    """A parameter-shaped tensor in the canonical (in, out) layout: a copy, or with ``copy=False`` a
    view of a CPU tensor's memory where the layout allows (for reading at once, as a checkpoint
    write does: a 2^20 x 200 kernel and its moments took 1.3 s to copy per save)."""
    tensor = tensor.detach()
    array = (tensor.T if transposed else tensor).cpu().numpy()
    return array.copy() if copy else array


def from_canonical(array: np.ndarray, transposed: bool) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    return tensor.T.contiguous() if transposed else tensor


def model_dtype(model: MultiTaskNetwork) -> np.dtype:
    return torch.empty((), dtype=model.trunk[0].weight.dtype).numpy().dtype


def export_params(model: MultiTaskNetwork) -> dict[str, np.ndarray]:
    """The model's weights as canonical numpy arrays (copies, in the model's float dtype)."""
    _check_model(model)
    return canonical_arrays(model)


def canonical_arrays(model: MultiTaskNetwork, copy: bool = True) -> dict[str, np.ndarray]:
    """The weights in the canonical layout: copies, or views where ``copy=False`` allows (see to_canonical)."""
    return {name: to_canonical(p, t, copy=copy) for name, (p, t) in canonical_parameters(model).items()}


def import_params(model: MultiTaskNetwork, params: Mapping[str, np.ndarray]) -> None:
    """Load canonical weights into ``model`` in place, after checking every name, shape and dtype."""
    _check_model(model)
    checked = check_params(params, canonical_shapes(model.arch), dtype=model_dtype(model))
    with torch.no_grad():
        for name, (parameter, transposed) in canonical_parameters(model).items():
            parameter.copy_(from_canonical(checked[name], transposed))
