"""The training recipe every model of a command shares, and the options that set it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Mapping

from mtl_core.curricula import CURRICULA
from mtl_cli.specs import FIXED_SPEC, parse_weighting


@dataclass(frozen=True)
class Recipe:
    """Epochs, seed, curriculum and weighting come from the command line; the rest is the blog's."""

    epochs: int = 6
    seed: int = 0
    curriculum: str = "round_robin"
    weighting: str | Mapping[str, float] = "sum"
    batch_size: int = 64
    lr: float = 1e-3
    hidden_dims: tuple[int, ...] = (200,)
    activation: str = "sigmoid"
    grad_norm_every: int = 10  # record the layers' gradient norms every this many steps (a measurement only)

    def as_config(self) -> dict:
        """The recipe as report/metrics JSON."""
        return {
            "epochs": self.epochs, "seed": self.seed, "curriculum": self.curriculum, "weighting": self.weighting,
            "batch_size": self.batch_size, "optimizer": "adam", "lr": self.lr,
            "hidden_dims": list(self.hidden_dims), "activation": self.activation, "grad_norm_every": self.grad_norm_every,
        }


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Recipe()
    parser.add_argument("--epochs", type=int, metavar="N", default=defaults.epochs,
                        help=f"training epochs (default {defaults.epochs}, as the blog)")
    parser.add_argument("--seed", type=int, metavar="S", default=defaults.seed,
                        help="seed of the data, the held-out split, the weights and the batch order")
    parser.add_argument("--curriculum", choices=CURRICULA, default=defaults.curriculum,
                        help=f"batch order of the tasks (default {defaults.curriculum})")
    parser.add_argument("--weighting", default=defaults.weighting, metavar="NAME",
                        help=f"how the task losses combine: sum (default, the blog), mean, uncertainty, dwa, or {FIXED_SPEC}")


def recipe_from(args: argparse.Namespace) -> Recipe:
    return Recipe(epochs=args.epochs, seed=args.seed, curriculum=args.curriculum, weighting=parse_weighting(args.weighting))
