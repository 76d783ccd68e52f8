"""What differs between the backends, behind one small ``Model`` adapter per framework.

The commands are written once against this interface. A model keeps its optimiser state between
``fit`` calls until ``reset_optimizer``, and counts its epochs, so a later ``fit`` draws fresh
batches. Each framework is imported only when its backend is used.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from mtl_core.architecture import check_architecture
from mtl_core.checkpoint import Checkpoint
from mtl_core.config import TrainConfig
from mtl_core.data import TaskData
from mtl_core.fitting import EVAL_CHUNK
from mtl_core.layout import initial_params
from mtl_core.lazy_adam import LAZY_ADAM
from mtl_core.tasks import TaskSpec, resolve_task_id
from mtl_cli.recipe import Recipe

BACKENDS = ("torch", "jax")


def initial_weights(input_dim: int, tasks: Sequence[TaskSpec], recipe: Recipe) -> dict[str, np.ndarray]:
    """The canonical start for the recipe's seed, drawn in numpy: the same model in every backend."""
    return initial_params(check_architecture(tasks, recipe.hidden_dims, recipe.activation, input_dim), recipe.train.seed)


def _in_chunks(logits_of, X: sp.csr_matrix) -> np.ndarray:
    """Logits of ``X`` (n, features) computed EVAL_CHUNK rows at a time."""
    return np.concatenate([logits_of(X[i : i + EVAL_CHUNK]) for i in range(0, X.shape[0], EVAL_CHUNK)], axis=0)


class TrainingRun:
    """What a model remembers between its ``fit`` calls: the epochs done and their training losses.

    A later fit starts at the next epoch (fresh batches) and, for ``dwa``, knows the earlier
    epochs' losses, so that fitting epoch by epoch trains exactly as one fit of all the epochs.
    """

    def __init__(self, epochs_done: int = 0):
        self.epochs_done = epochs_done
        self.epoch_losses: dict[str, list[float]] = {}

    def next_config(self, recipe: Recipe, progress: bool) -> TrainConfig:
        return recipe.train.with_options(first_epoch=self.epochs_done, progress=progress)

    def previous_losses(self) -> dict[str, list[float]]:
        return self.epoch_losses

    def record(self, history: dict) -> dict:
        self.epochs_done += len(history["epoch"])
        for name, values in history["loss"].items():
            self.epoch_losses.setdefault(name, []).extend(values)
        return history

    def new_run(self) -> None:
        """The next fit is a new training run: fresh optimiser state, no earlier losses."""
        self.epoch_losses = {}


class TorchModel(TrainingRun):
    """A torch_ref network and its Adam optimiser (created by the first ``fit``)."""

    backend = "torch"

    def __init__(self, network, optimizer=None, epochs_done: int = 0):
        super().__init__(epochs_done)
        self.network, self.optimizer = network, optimizer

    @property
    def device(self) -> str:
        return str(self.network.trunk[0].weight.device)

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return self.network.tasks

    @classmethod
    def build(cls, input_dim: int, tasks: Sequence[TaskSpec], recipe: Recipe, params: Mapping | None = None, device=None) -> "TorchModel":
        """A network with ``params`` (canonical), by default ``initial_weights`` for the recipe's seed, on ``device``."""
        import torch_ref

        network = torch_ref.MultiTaskNetwork(input_dim, tasks, recipe.hidden_dims, recipe.activation)
        torch_ref.import_params(network, initial_weights(input_dim, tasks, recipe) if params is None else params)
        return cls(network.to(device or "cpu"))

    @classmethod
    def load(cls, path: Path, device=None) -> tuple["TorchModel", Checkpoint]:
        import torch_ref

        network, optimizer, checkpoint = torch_ref.load_checkpoint(path, device=device, with_extras=True)
        return cls(network, optimizer), checkpoint

    def fit(self, data: Mapping[str, TaskData], eval_data, recipe: Recipe, *, progress: bool) -> dict:
        import torch_ref

        if self.optimizer is None:
            make = torch_ref.lazy_adam if recipe.optimizer == LAZY_ADAM else torch_ref.adam
            self.optimizer = make(self.network, recipe.train.lr)
        _, history = torch_ref.fit(
            self.network, data, self.next_config(recipe, progress), eval_data=eval_data, optimizer=self.optimizer,
            previous_losses=self.previous_losses(),
        )
        return self.record(history)

    def reset_optimizer(self) -> None:
        """Start the next ``fit`` with a fresh Adam, as a new training run would."""
        self.optimizer = None
        self.new_run()

    def params(self) -> dict[str, np.ndarray]:
        import torch_ref

        return torch_ref.export_params(self.network)

    def logits(self, task: str, X: sp.csr_matrix) -> np.ndarray:
        import torch

        index = resolve_task_id(self.tasks, task)
        with torch.no_grad():
            return _in_chunks(lambda rows: self.network(rows, index).double().cpu().numpy(), X)

    def save(self, path: Path, *, weighting, vocabulary, label_names, hash_features=None) -> None:
        import torch_ref

        torch_ref.save_checkpoint(
            path, self.network, self.optimizer, weighting=weighting, vocabulary=vocabulary, label_names=label_names,
            hash_features=hash_features,
        )


class JaxModel(TrainingRun):
    """A jax_impl module, its params and its optax state (created by the first ``fit``)."""

    backend = "jax"

    def __init__(self, module, variables, opt_state=None, epochs_done: int = 0, weighting_state=None, device=None):
        super().__init__(epochs_done)
        self.module, self.variables, self.opt_state = module, variables, opt_state
        self.weighting_state = weighting_state  # the weighting's own state between fits (FAMO's logits)
        self.device = device  # a jax Device; None: jax's default
        self._apply = None

    def _on_device(self):
        """jax's default device set to the model's, around everything that makes arrays."""
        import contextlib

        import jax

        return contextlib.nullcontext() if self.device is None else jax.default_device(self.device)

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return self.module.tasks

    @classmethod
    def build(cls, input_dim: int, tasks: Sequence[TaskSpec], recipe: Recipe, params: Mapping | None = None, device=None) -> "JaxModel":
        """A network with ``params`` (canonical), by default ``initial_weights`` for the recipe's seed, on ``device``."""
        import jax_impl

        model = cls(jax_impl.MultiTaskNetwork(tuple(tasks), recipe.hidden_dims, recipe.activation), None, device=device)
        with model._on_device():
            model.variables = jax_impl.import_params(initial_weights(input_dim, tasks, recipe) if params is None else params, model.module)
        return model

    @classmethod
    def load(cls, path: Path, device=None) -> tuple["JaxModel", Checkpoint]:
        import jax_impl

        model = cls(None, None, device=device)
        with model._on_device():
            model.module, model.variables, model.opt_state, checkpoint = jax_impl.load_checkpoint(path, with_extras=True)
        model.weighting_state = checkpoint.weighting_state or None
        return model, checkpoint

    def fit(self, data: Mapping[str, TaskData], eval_data, recipe: Recipe, *, progress: bool) -> dict:
        import jax_impl

        with self._on_device():
            self.variables, history, state = jax_impl.fit(
                self.module, data, self.next_config(recipe, progress), eval_data=eval_data, params=self.variables, tx=_jax_tx(recipe),
                opt_state=self.opt_state, weighting_state=self.weighting_state, previous_losses=self.previous_losses(), return_state=True,
                donate=True,
            )
        self.opt_state, self.weighting_state = state.opt_state, state.weighting
        return self.record(history)

    def reset_optimizer(self) -> None:
        """Start the next ``fit`` with a fresh Adam (and weighting state), as a new training run would."""
        self.opt_state = self.weighting_state = None
        self.new_run()

    def params(self) -> dict[str, np.ndarray]:
        import jax_impl

        return jax_impl.export_params(self.variables)

    def logits(self, task: str, X: sp.csr_matrix) -> np.ndarray:
        import jax
        from jax_impl.inputs import as_network_input

        index = resolve_task_id(self.tasks, task)
        if self._apply is None:
            module = self.module
            self._apply = jax.jit(lambda params, x, i: module.apply({"params": params}, x, task_id=i), static_argnums=2)
        params = self.variables["params"]
        with self._on_device():
            return _in_chunks(lambda rows: np.asarray(self._apply(params, as_network_input(rows), index), np.float64), X)

    def save(self, path: Path, *, weighting, vocabulary, label_names, hash_features=None) -> None:
        import jax_impl

        jax_impl.save_checkpoint(
            path, self.module, self.variables, self.opt_state, weighting=weighting, weighting_state=self.weighting_state,
            vocabulary=vocabulary, label_names=label_names, hash_features=hash_features,
        )


@functools.lru_cache(maxsize=8)
def _lazy_tx(lr: float):
    """One jax_impl.lazy_adam per lr: fits of one run (one per epoch) then share their compiled step."""
    import jax_impl

    return jax_impl.lazy_adam(lr)


def _jax_tx(recipe: Recipe):
    """The optax transformation of the recipe's optimiser (None: fit's default, jax_impl.adam)."""
    return _lazy_tx(recipe.train.lr) if recipe.optimizer == LAZY_ADAM else None


MODELS = {"torch": TorchModel, "jax": JaxModel}


def model_class(backend: str):
    """The adapter class of ``backend`` ("torch" or "jax")."""
    if backend not in MODELS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    return MODELS[backend]


def builder(backend: str, device):
    """``build(input_dim, tasks, recipe, params=None)`` of ``backend``'s adapter, on ``device``."""
    return functools.partial(model_class(backend).build, device=device)


def framework_versions(backends: Sequence[str]) -> dict[str, str]:
    """The versions of the frameworks the run used, for reports."""
    versions = {}
    if "torch" in backends:
        import torch

        versions["torch"] = torch.__version__
    if "jax" in backends:
        import flax
        import jax
        import optax

        versions.update(jax=jax.__version__, flax=flax.__version__, optax=optax.__version__)
    return versions
