"""The training recipe every model of a command shares, and the options that set it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, replace

from mtl_core.aggregation import AGGREGATORS
from mtl_core.config import TrainConfig
from mtl_core.curricula import CURRICULA
from mtl_core.weighting import Fixed, Weighting
from mtl_cli.specs import FIXED_SPEC, parse_weighting


def weighting_label(weighting: Weighting):
    """How reports show a weighting: its name, or the {task: weight} mapping of a fixed one."""
    return dict(weighting.weights) if isinstance(weighting, Fixed) else weighting.name


@dataclass(frozen=True)
class Recipe:
    """How every model of a command trains (mtl_core's TrainConfig) and the shape of its trunk.

    Epochs, seed, curriculum and weighting come from the command line; the rest is the blog's.
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    hidden_dims: tuple[int, ...] = (200,)
    activation: str = "sigmoid"

    def with_training(self, **options) -> "Recipe":
        return replace(self, train=self.train.with_options(**options))

    def as_config(self) -> dict:
        """The recipe as report/metrics JSON."""
        t = self.train
        return {
            "epochs": t.epochs, "seed": t.seed, "curriculum": t.curriculum.name, "weighting": weighting_label(t.weighting),
            "batch_size": t.batch_size, "optimizer": "adam", "lr": t.lr,
            "hidden_dims": list(self.hidden_dims), "activation": self.activation, "grad_norm_every": t.grad_norm_every,
            "aggregator": None if t.aggregator is None else t.aggregator.name,
        }


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, metavar="N", default=defaults.epochs,
                        help=f"training epochs (default {defaults.epochs}, as the blog)")
    parser.add_argument("--seed", type=int, metavar="S", default=defaults.seed,
                        help="seed of the data, the held-out split, the weights and the batch order")
    parser.add_argument("--curriculum", choices=CURRICULA, default=defaults.curriculum.name,
                        help=f"batch order of the tasks (default {defaults.curriculum.name})")
    parser.add_argument("--weighting", default=defaults.weighting.name, metavar="NAME",
                        help="how the task losses combine: sum (default, the blog), mean, uncertainty, dwa, famo, rlw, "
                        f"or {FIXED_SPEC}")
    parser.add_argument("--aggregator", choices=tuple(AGGREGATORS), metavar="NAME",
                        help="combine the tasks' own gradients on the shared trunk with a gradient-conflict method: "
                        f"{', '.join(AGGREGATORS)} (default: none, the gradient of the combined loss)")


def recipe_from(args: argparse.Namespace) -> Recipe:
    weighting = parse_weighting(args.weighting)
    return Recipe(TrainConfig(epochs=args.epochs, seed=args.seed, curriculum=args.curriculum, weighting=weighting, aggregator=args.aggregator))
