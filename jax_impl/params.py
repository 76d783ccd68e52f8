"""jax_impl <-> the canonical numpy layout (mtl_core.layout), and initialisation.

Flax already stores kernels (in, out), so the mapping is a renaming:
params["params"]["trunk"][str(i)]  <->  "trunk.{i}.*",  params["params"]["heads"][task]  <->  "heads.{task}.*".
Learnable loss-weighting state, when present, sits beside the network under params["weighting"].
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mtl_core.layout import canonical_shapes, check_mapping, check_params, inferred_shapes
from jax_impl.model import MultiTaskNetwork


def network_params(params: Mapping) -> Mapping:
    """The network's own parameter tree inside flax variables {"params": ...}."""
    if not isinstance(params, Mapping) or "params" not in params:
        raise TypeError(
            "params must be flax variables {'params': {...}} as returned by init_params, import_params or fit, "
            f"got {type(params).__name__}"
        )
    return params["params"]


def canonical_name(path) -> str:
    """The canonical name of a leaf of a params-shaped tree from its key path:
    ("params", "trunk", "0", "kernel") -> "trunk.0.kernel"; ("weighting", "log_var") -> "weighting.log_var".
    """
    keys = [str(getattr(entry, "key", entry)) for entry in path]
    return ".".join(keys[1:] if keys[0] == "params" else keys)


def canonical_view(params: Mapping) -> dict:
    """The network's arrays keyed by canonical name, without copying them off the device."""
    network_params(params)  # checks that params are flax variables
    leaves = jax.tree_util.tree_flatten_with_path({"params": params["params"]})[0]
    return {canonical_name(path): value for path, value in leaves}


def check_variables(module: MultiTaskNetwork, params: Mapping) -> None:
    """Raise a clear error unless ``params`` has exactly the shapes ``module`` needs."""
    view = canonical_view(params)
    kernel = view.get("trunk.0.kernel")
    if kernel is None or len(kernel.shape) != 2:
        raise ValueError("params hold no 2-D 'trunk.0.kernel': not the weights of a MultiTaskNetwork")
    expected = canonical_shapes(module.arch.with_input_dim(kernel.shape[0]))
    shapes = {name: tuple(value.shape) for name, value in view.items()}
    missing = [k for k in expected if k not in shapes]
    extra = [k for k in shapes if k not in expected]
    wrong = [f"{k}: {shapes[k]} (expected {expected[k]})" for k in expected if k in shapes and shapes[k] != expected[k]]
    if missing or extra or wrong:
        raise ValueError(f"params do not fit the network: missing {missing}, unexpected {extra}, wrongly shaped {wrong}")


def export_params(params: Mapping) -> dict[str, np.ndarray]:
    """The network's weights as canonical numpy arrays (copies); loss-weighting state is left out."""
    return {name: np.array(value) for name, value in canonical_view(params).items()}


def import_params(params: Mapping[str, np.ndarray], module: MultiTaskNetwork | None = None) -> dict:
    """Flax variables {"params": ...} from canonical weights, checked for missing, extra and misshapen entries.

    Without ``module`` the shapes are checked against each other (the layers must chain); with it,
    against the module's tasks and trunk as well. dtypes are kept: float64 needs jax x64 enabled.
    """
    check_mapping(params)
    expected = inferred_shapes(params) if module is None else None
    if module is not None:
        if not isinstance(module, MultiTaskNetwork):
            raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
        kernel = np.shape(params.get("trunk.0.kernel", ())) if isinstance(params, Mapping) else ()
        if len(kernel) != 2:
            raise ValueError("params hold no 2-D 'trunk.0.kernel': not the weights of a MultiTaskNetwork")
        expected = canonical_shapes(module.arch.with_input_dim(kernel[0]))
    checked = check_params(params, expected)
    for name, value in checked.items():
        if value.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise TypeError(f"params[{name!r}] is float64 but jax x64 is off; enable it or pass float32 weights")
    tree: dict = {"trunk": {}, "heads": {}}
    for name, value in checked.items():
        group, rest = name.split(".", 1)
        layer, leaf = rest.rsplit(".", 1)
        tree[group].setdefault(layer, {})[leaf] = jnp.asarray(value)
    return {"params": tree}


def init_params(module: MultiTaskNetwork, key: jax.Array, input_dim: int) -> dict:
    """Fresh flax variables for ``input_dim`` features, every head included."""
    if not isinstance(module, MultiTaskNetwork):
        raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
    input_dim = module.arch.with_input_dim(input_dim).input_dim
    if not (isinstance(key, jax.Array) and (jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) or key.shape == (2,))):
        raise TypeError(f"key must be a jax random key (jax.random.key(seed)), got {key!r:.60}")
    return dict(module.init(key, jnp.zeros((1, input_dim), jnp.float32)))
