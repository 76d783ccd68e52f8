"""The canonical weight layout: the one bridge between the two backends.

Numpy arrays keyed ``trunk.{i}.kernel`` (in, out), ``trunk.{i}.bias`` (out,),
``heads.{task}.kernel`` (in, out), ``heads.{task}.bias`` (out,). Kernels are stored (in, out) as
Flax does; the PyTorch side transposes its ``nn.Linear`` weights in ``torch_ref.params`` and only there.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from mtl_core.architecture import Architecture

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def canonical_shapes(arch: Architecture) -> dict[str, tuple[int, ...]]:
    """The name and shape of every parameter of a network with this architecture."""
    if arch.input_dim is None:
        raise ValueError("the canonical layout needs the network's input_dim")
    shapes: dict[str, tuple[int, ...]] = {}
    fan_in = arch.input_dim
    for i, width in enumerate(arch.hidden_dims):
        shapes[f"trunk.{i}.kernel"] = (fan_in, width)
        shapes[f"trunk.{i}.bias"] = (width,)
        fan_in = width
    for task in arch.tasks:
        shapes[f"heads.{task.name}.kernel"] = (fan_in, task.num_outputs)
        shapes[f"heads.{task.name}.bias"] = (task.num_outputs,)
    return shapes


def initial_params(arch: Architecture, seed, dtype=np.float32) -> dict[str, np.ndarray]:
    """Canonical weights drawn in numpy: uniform in +-1/sqrt(fan_in), as PyTorch's ``nn.Linear``.

    One draw that either backend imports, so a seed means the same model in both. ``seed`` is
    anything ``np.random.default_rng`` takes.
    """
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {}
    for name, shape in canonical_shapes(arch).items():
        fan_in = shape[0] if name.endswith(".kernel") else params[name[: -len("bias")] + "kernel"].shape[0]
        bound = 1.0 / np.sqrt(fan_in)
        params[name] = np.empty(shape, dtype)
        # Row blocks drawn one after another are the same stream as one draw of the whole array,
        # without its float64 copy (1.7 GB for a 2^20 x 200 kernel).
        rows = max(1, DRAW_BLOCK // max(1, int(np.prod(shape[1:]))))
        for start in range(0, shape[0], rows):
            block = rng.uniform(-bound, bound, (min(rows, shape[0] - start),) + tuple(shape[1:]))
            params[name][start : start + len(block)] = block.astype(np.float32)
    return params


DRAW_BLOCK = 2**22  # values initial_params draws at a time (32 MiB of float64)


def inferred_shapes(params: Mapping[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """The {name: shape} a canonical params dict must have, read off its own trunk and heads.

    For loading weights without a model at hand: the layer widths must chain (each layer's input
    is the previous one's output), which is what is checked afterwards.
    """
    check_mapping(params)
    n_trunk = 0
    while f"trunk.{n_trunk}.kernel" in params:
        n_trunk += 1
    if n_trunk == 0:
        raise ValueError("params hold no 'trunk.0.kernel': not a canonical multi-task weight dict")
    kernels = [np.shape(params[f"trunk.{i}.kernel"]) for i in range(n_trunk)]
    for i, shape in enumerate(kernels):
        if len(shape) != 2:
            raise ValueError(f"params['trunk.{i}.kernel'] must be 2-D (in, out), got shape {shape}")
    heads = {}
    for key, value in params.items():
        if key.startswith("heads.") and key.endswith(".kernel"):
            shape = np.shape(value)
            if len(shape) != 2:
                raise ValueError(f"params[{key!r}] must be 2-D (in, out), got shape {shape}")
            heads[key[len("heads.") : -len(".kernel")]] = shape[1]
    if not heads:
        raise ValueError("params hold no 'heads.{task}.kernel' entry: a network needs at least one head")
    fan_in = kernels[0][0]
    shapes: dict[str, tuple[int, ...]] = {}
    for i, shape in enumerate(kernels):
        shapes[f"trunk.{i}.kernel"], shapes[f"trunk.{i}.bias"] = (fan_in, shape[1]), (shape[1],)
        fan_in = shape[1]
    for name, width in heads.items():
        shapes[f"heads.{name}.kernel"], shapes[f"heads.{name}.bias"] = (fan_in, width), (width,)
    return shapes


def check_mapping(params) -> None:
    if not isinstance(params, Mapping):
        raise TypeError(f"params must be a dict of name -> numpy array, got {type(params).__name__}")


def check_params(params: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], dtype=None) -> dict[str, np.ndarray]:
    """Check a canonical params dict against the expected {name: shape}; return numpy arrays.

    Raises for missing, extra or wrongly-shaped entries, for non-float values and for NaN or inf
    (a damaged file or a diverged run: such weights predict nothing); ``dtype``, when given, is the
    one floating dtype every entry must have (the model's own).
    """
    check_mapping(params)
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        raise ValueError(
            f"params do not fit the network: missing {missing}, unexpected {extra} "
            f"(expected exactly {list(expected)})"
        )
    checked = {}
    for key, shape in expected.items():
        value = np.asarray(params[key])
        if value.shape != shape:
            raise ValueError(f"params[{key!r}] has shape {value.shape}, expected {shape}")
        if value.dtype not in FLOAT_DTYPES:
            raise TypeError(f"params[{key!r}] has dtype {value.dtype}, expected float32 or float64")
        if dtype is not None and value.dtype != np.dtype(dtype):
            raise TypeError(f"params[{key!r}] has dtype {value.dtype}, expected the model's {np.dtype(dtype)}")
        if not np.all(np.isfinite(value)):
            raise ValueError(f"params[{key!r}] holds {int(np.sum(~np.isfinite(value)))} NaN or inf values: not usable weights")
        checked[key] = value
    return checked
