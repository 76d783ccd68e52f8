"""The training configuration: one frozen, checked value that both ``fit``s and the CLI read.

``fit(module, data, config)`` and ``fit(module, data, epochs=2, lr=1e-2, ...)`` are the same call:
keyword options are ``dataclasses.replace``d into the configuration (``TrainConfig.with_options``),
so every option is named, checked and documented once, here.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any

from mtl_core.aggregation import describe, resolve_aggregator
from mtl_core.curricula import check_batch_size, resolve_curriculum
from mtl_core.weighting import as_weighting


def check_positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}")
    return float(value)


def check_adam(lr, b1, b2, eps) -> tuple[float, float, float, float]:
    """Adam's hyper-parameters as floats, refused (ValueError naming the value) unless lr > 0,
    0 <= b1, b2 < 1 and eps >= 0, all finite: both backends' optimisers check them alike."""
    lr = check_positive(lr, "Adam's lr")
    betas = []
    for value, what in ((b1, "b1"), (b2, "b2")):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
            raise ValueError(f"Adam's {what} must be a number in [0, 1), got {value!r}")
        betas.append(float(value))
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"Adam's eps must be a finite number >= 0, got {eps!r}")
    return lr, betas[0], betas[1], float(eps)


def check_count(value, what: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{what} must be an int >= {minimum}, got {value!r}")
    return int(value)


SEED_LIMIT = 2**63  # jax.random.key takes an int64


def check_seed(value) -> int:
    seed = check_count(value, "seed")
    if seed >= SEED_LIMIT:
        raise ValueError(f"seed must be an int in [0, 2**63) (jax's random keys hold an int64), got {value!r}")
    return seed


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the recipe's defaults are the blog's (6 epochs, batch 64, Adam 1e-3, round robin, sum).

    epochs, batch_size, lr (Adam's, when ``fit`` builds the optimiser), seed (initial weights when
    none are given, and the batch order), curriculum (a name or a Curriculum), weighting (a name,
    a {task: weight} mapping or a Weighting), aggregator (None: the gradient of the combined loss;
    else a gradient-conflict method of mtl_core.aggregation, an instance or its name),
    grad_norm_every (record the layers' gradient norms every this many steps of an epoch),
    first_epoch (the epoch a resumed run starts at: it draws the batches the uninterrupted run
    would have drawn), progress (a progress bar on stderr).
    """

    epochs: int = 6
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    curriculum: Any = "round_robin"
    weighting: Any = "sum"
    aggregator: Any = None
    grad_norm_every: int = 10
    first_epoch: int = 0
    progress: bool = False

    def __post_init__(self):
        checked = {
            "epochs": check_count(self.epochs, "epochs"),
            "batch_size": check_batch_size(self.batch_size),
            "lr": check_positive(self.lr, "lr"),
            "seed": check_seed(self.seed),
            "curriculum": resolve_curriculum(self.curriculum),
            "weighting": as_weighting(self.weighting),
            "aggregator": resolve_aggregator(self.aggregator),
            "grad_norm_every": check_count(self.grad_norm_every, "grad_norm_every", minimum=1),
            "first_epoch": check_count(self.first_epoch, "first_epoch"),
        }
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be True or False, got {self.progress!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def with_options(self, **options) -> "TrainConfig":
        """This configuration with ``options`` (field names) replaced; unknown names raise TypeError."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(options) - set(fields))
        if unknown:
            raise TypeError(f"unknown training option(s) {unknown}; TrainConfig's options are {fields}")
        return dataclasses.replace(self, **options) if options else self

    def as_dict(self) -> dict:
        """JSON-safe: for reports, metrics files and checkpoints."""
        return {
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "seed": self.seed,
            "curriculum": self.curriculum.name,
            "weighting": self.weighting.config(),
            "aggregator": None if self.aggregator is None else describe(self.aggregator),
            "grad_norm_every": self.grad_norm_every,
            "first_epoch": self.first_epoch,
        }


def training_config(config: TrainConfig | None, options: dict) -> TrainConfig:
    """The configuration a ``fit`` call means: ``config`` (default TrainConfig()) with ``options``."""
    if config is not None and not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a mtl_core.TrainConfig, got {type(config).__name__}")
    return (config or TrainConfig()).with_options(**options)
