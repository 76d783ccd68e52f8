"""Checkpoints in the shared safetensors format (mtl_core.checkpoint): model and Adam state."""

from __future__ import annotations

import os

import numpy as np
import torch

from mtl_core.checkpoint import LOG_VARIANCE, AdamHyper, AdamState, Checkpoint, read_checkpoint, write_checkpoint
from mtl_core.lazy_adam import LAZY_ADAM
from mtl_core.weighting import resolve_weighting
from torch_ref.model import MultiTaskNetwork
from torch_ref.optimizer import LazyAdam, adam, holds_parameters_of, lazy_adam
from torch_ref.params import _check_model, canonical_arrays, canonical_parameters, from_canonical, import_params, to_canonical
from torch_ref.step import LOG_VARIANCE_GROUP, WEIGHTING_STATE_GROUP


def _named_groups(optimizer: torch.optim.Optimizer | None, prefix: str) -> dict[str, torch.Tensor]:
    """{name after ``prefix``: tensor} of the optimizer's one-tensor param groups named ``prefix...``."""
    groups = optimizer.param_groups if optimizer is not None else []
    return {g["name"][len(prefix) :]: g["params"][0] for g in groups if str(g.get("name", "")).startswith(prefix)}


def _log_variance_parameter(optimizer: torch.optim.Optimizer | None):
    return _named_groups(optimizer, LOG_VARIANCE_GROUP).get("")


def _adam_hyper(optimizer: torch.optim.Optimizer) -> AdamHyper:
    if not isinstance(optimizer, torch.optim.Adam):
        raise TypeError(f"checkpoints hold Adam's state; got a {type(optimizer).__name__}")
    settings = {(g["lr"], g["betas"], g["eps"], g["weight_decay"], g["amsgrad"], g["maximize"]) for g in optimizer.param_groups}
    if len(settings) != 1:
        raise ValueError("checkpoints hold one set of Adam hyper-parameters; the optimizer's param groups differ")
    lr, (b1, b2), eps, weight_decay, amsgrad, maximize = settings.pop()
    if weight_decay or amsgrad or maximize:
        raise ValueError("checkpoints hold plain Adam (no weight_decay, amsgrad or maximize), as fit uses")
    return AdamHyper(float(lr), float(b1), float(b2), float(eps))


def _adam_state(optimizer: torch.optim.Optimizer, named: dict) -> AdamState:
    moments = {"exp_avg": {}, "exp_avg_sq": {}}
    steps = {}
    for name, (parameter, transposed) in named.items():
        state = optimizer.state.get(parameter, {})
        for moment in moments:
            value = state.get(moment)
            moments[moment][name] = to_canonical(value if value is not None else torch.zeros_like(parameter), transposed, copy=False)
        steps[name] = int(state["step"]) if "step" in state else 0
    name = LAZY_ADAM if isinstance(optimizer, LazyAdam) else "adam"
    return AdamState(_adam_hyper(optimizer), moments["exp_avg"], moments["exp_avg_sq"], steps, name)


def save_checkpoint(
    path: str | os.PathLike,
    model: MultiTaskNetwork,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    weighting=None,
    vocabulary=None,
    label_names=None,
    hash_features=None,
) -> None:
    """Write ``model`` (and Adam's state when ``optimizer`` is given) to one safetensors file.

    ``vocabulary`` or ``hash_features`` (the number of hashed columns): how texts became columns.
    ``weighting`` defaults to "uncertainty" when the optimizer trains its log-variances, else "sum".
    """
    _check_model(model)
    if optimizer is not None and not holds_parameters_of(optimizer, model):
        raise ValueError(
            "the optimizer holds none of the model's parameters (built for another model, or for the original of a "
            "copy?), so its Adam state is not this model's: pass the optimizer that trains this model"
        )
    log_var = _log_variance_parameter(optimizer)
    weighting = resolve_weighting(weighting or ("uncertainty" if log_var is not None else "sum"), model.tasks)
    if weighting.learnable and log_var is None:
        raise ValueError("uncertainty weighting: the optimizer has no 'weighting.log_var' group to save")
    named = canonical_parameters(model)
    if weighting.learnable:
        named[LOG_VARIANCE] = (log_var, False)
    write_checkpoint(
        path,
        Checkpoint(
            arch=model.arch,
            params=canonical_arrays(model, copy=False),
            weighting=weighting,
            log_variances=None if log_var is None else to_canonical(log_var, False, copy=False),
            adam=None if optimizer is None else _adam_state(optimizer, named),
            vocabulary=None if vocabulary is None else tuple(vocabulary),
            label_names={k: tuple(v) for k, v in (label_names or {}).items()},
            weighting_state=_weighting_state(optimizer, weighting),
            hash_features=hash_features,
        ),
    )


def _weighting_state(optimizer, weighting) -> dict[str, np.ndarray]:
    """The weighting's state the step keeps in the optimizer; its initial state when there is none yet."""
    found = {key: value.detach().cpu().numpy() for key, value in _named_groups(optimizer, WEIGHTING_STATE_GROUP).items()}
    return {key: found.get(key, initial) for key, initial in weighting.init_state().items()}


def load_checkpoint(path: str | os.PathLike, *, device=None, with_extras: bool = False):
    """``(model, optimizer)`` from a checkpoint written by either backend (optimizer None if not saved).

    The optimizer is the one saved: torch_ref.adam, or torch_ref.lazy_adam when the file says "lazy_adam".

    ``device`` (e.g. "cuda"): where the model and Adam's state are built (default the CPU), so that a
    resumed fused Adam finds its state beside its parameters. With ``with_extras=True`` the mtl_core
    ``Checkpoint`` (vocabulary, label names, weighting) is returned as a third value.
    """
    checkpoint = read_checkpoint(path)
    arch = checkpoint.arch
    model = MultiTaskNetwork(arch.input_dim, arch.tasks, arch.hidden_dims, arch.activation)
    if checkpoint.params["trunk.0.kernel"].dtype == np.float64:
        model = model.double()
    import_params(model, checkpoint.params)
    if device is not None:
        model = model.to(device)
    optimizer = None
    if checkpoint.adam is not None:
        optimizer = _restore_adam(model, checkpoint)
    return (model, optimizer, checkpoint) if with_extras else (model, optimizer)


def _restore_adam(model: MultiTaskNetwork, checkpoint: Checkpoint) -> torch.optim.Adam:
    """The optimiser the file names (Adam or lazy Adam), its state and param groups as saved."""
    hyper = checkpoint.adam.hyper
    make = lazy_adam if checkpoint.adam.optimizer == LAZY_ADAM else adam
    optimizer = make(model, hyper.lr, hyper.b1, hyper.b2, hyper.eps)
    named = canonical_parameters(model)
    if checkpoint.weighting.learnable:
        reference = model.trunk[0].weight
        log_var = torch.nn.Parameter(torch.from_numpy(checkpoint.log_variances).to(reference))
        optimizer.add_param_group({"params": [log_var], "name": LOG_VARIANCE_GROUP})
        named[LOG_VARIANCE] = (log_var, False)
    for key, value in checkpoint.weighting_state.items():
        optimizer.add_param_group({"params": [torch.from_numpy(value).to(model.trunk[0].weight)], "name": WEIGHTING_STATE_GROUP + key})
    for name, (parameter, transposed) in named.items():
        if checkpoint.adam.step[name] == 0:
            continue  # never updated: torch creates the state on the first step
        optimizer.state[parameter] = {
            "step": torch.tensor(float(checkpoint.adam.step[name]), dtype=torch.float32, device=parameter.device),
            "exp_avg": from_canonical(checkpoint.adam.exp_avg[name], transposed).to(parameter),
            "exp_avg_sq": from_canonical(checkpoint.adam.exp_avg_sq[name], transposed).to(parameter),
        }
    return optimizer
