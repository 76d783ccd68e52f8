"""The training recipe every model of a command shares, and the options that set it."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field, replace

from mtl_core.aggregation import AGGREGATORS
from mtl_core.architecture import ACTIVATIONS
from mtl_core.config import TrainConfig
from mtl_core.curricula import CURRICULA
from mtl_core.lazy_adam import LAZY_ADAM
from mtl_core.weighting import Fixed, Weighting
from mtl_cli.specs import FIXED_SPEC, parse_weighting


OPTIMIZERS = ("adam", LAZY_ADAM)
# Lazy Adam by default from this many input columns: there exact Adam's pass over every row of the
# first layer's kernel costs more than the rest of the step (benchmarks/run.py's vocabulary sweep).
LAZY_FROM = 2**17
BYTES_PER_WEIGHT = 24  # float32 weight, two Adam moments, a gradient; a checkpoint save copies weights and moments


def weighting_label(weighting: Weighting):
    """How reports show a weighting: its name, or the {task: weight} mapping of a fixed one."""
    return dict(weighting.weights) if isinstance(weighting, Fixed) else weighting.name


@dataclass(frozen=True)
class Recipe:
    """How every model of a command trains (mtl_core's TrainConfig) and the shape of its trunk.

    Epochs, seed, curriculum and weighting come from the command line; the rest is the blog's.
    ``optimizer``: "adam" (the blog's) or "lazy_adam" (mtl_core.lazy_adam, for hashed inputs).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    hidden_dims: tuple[int, ...] = (200,)
    activation: str = "sigmoid"
    optimizer: str = "adam"

    def with_training(self, **options) -> "Recipe":
        return replace(self, train=self.train.with_options(**options))

    @classmethod
    def from_config(cls, config: dict) -> "Recipe":
        """The recipe ``as_config`` wrote (metrics.json, report.json): what ``--resume`` continues."""
        train = TrainConfig(
            epochs=config["epochs"], seed=config["seed"], curriculum=config["curriculum"], weighting=config["weighting"],
            aggregator=config.get("aggregator"), batch_size=config["batch_size"], lr=config["lr"],
            grad_norm_every=config["grad_norm_every"],
        )
        return cls(train, tuple(config["hidden_dims"]), config["activation"], config.get("optimizer", "adam"))

    def for_inputs(self, chosen: str | None, input_dim: int) -> "Recipe":
        """The recipe with the optimiser ``chosen`` (--optimizer), or by default the one for ``input_dim``
        columns: lazy Adam from LAZY_FROM on, exact Adam below."""
        return replace(self, optimizer=chosen or (LAZY_ADAM if input_dim >= LAZY_FROM else "adam"))

    def check_memory(self, input_dim: int) -> None:
        """Refuse, before any work, a trunk this machine's memory cannot train (e.g. a huge --hash-features).

        BYTES_PER_WEIGHT counts a weight, Adam's two moments, a gradient and the copies of a checkpoint save.
        """
        widths = (input_dim, *self.hidden_dims)
        weights = sum((d_in + 1) * d_out for d_in, d_out in zip(widths, widths[1:]))
        needed, memory = weights * BYTES_PER_WEIGHT, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if needed > memory:
            raise ValueError(
                f"the trunk has {weights:,} weights ({input_dim:,} input columns, hidden {','.join(map(str, self.hidden_dims))}): "
                f"training it needs about {needed / 2**30:,.0f} GiB, this machine has {memory / 2**30:,.0f} GiB; "
                "use fewer --hash-features or a smaller --hidden"
            )

    def as_config(self) -> dict:
        """The recipe as report/metrics JSON."""
        t = self.train
        return {
            "epochs": t.epochs, "seed": t.seed, "curriculum": t.curriculum.name, "weighting": weighting_label(t.weighting),
            "batch_size": t.batch_size, "optimizer": self.optimizer, "lr": t.lr,
            "hidden_dims": list(self.hidden_dims), "activation": self.activation, "grad_norm_every": t.grad_norm_every,
            "aggregator": None if t.aggregator is None else t.aggregator.name,
        }


def _count(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _widths(text: str) -> tuple[int, ...]:
    """``200`` or ``256,64``: the trunk's layer widths."""
    try:
        widths = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 200 or 256,64, got {text!r}") from None
    if not all(w >= 1 for w in widths):
        raise argparse.ArgumentTypeError(f"every width must be >= 1, got {text!r}")
    return widths


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    defaults, blog = TrainConfig(), Recipe()
    parser.add_argument("--epochs", type=_count(1), metavar="N", default=defaults.epochs,
                        help=f"training epochs, >= 1 (default {defaults.epochs}, as the blog)")
    parser.add_argument("--seed", type=_count(0), metavar="S", default=defaults.seed,
                        help="seed of the data, the held-out split, the weights and the batch order")
    parser.add_argument("--curriculum", choices=CURRICULA, default=defaults.curriculum.name,
                        help=f"batch order of the tasks (default {defaults.curriculum.name})")
    parser.add_argument("--weighting", default=defaults.weighting.name, metavar="NAME",
                        help="how the task losses combine: sum (default, the blog), mean, uncertainty, dwa, famo, rlw, "
                        f"or {FIXED_SPEC}")
    parser.add_argument("--aggregator", choices=tuple(AGGREGATORS), metavar="NAME",
                        help="combine the tasks' own gradients on the shared trunk with a gradient-conflict method: "
                        f"{', '.join(AGGREGATORS)} (default: none, the gradient of the combined loss)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS,
                        help=f"adam (exact: every weight every step) or {LAZY_ADAM} (the first layer updates only the rows of the "
                        f"words a step's batches hold, as torch.optim.SparseAdam); default adam, {LAZY_ADAM} from {LAZY_FROM:,} input columns")
    parser.add_argument("--lr", type=_positive_float, metavar="LR", default=defaults.lr, help=f"Adam's learning rate (default {defaults.lr:g})")
    parser.add_argument("--batch-size", type=_count(1), metavar="N", default=defaults.batch_size,
                        help=f"rows of each task per step (default {defaults.batch_size})")
    parser.add_argument("--hidden", type=_widths, metavar="W[,W...]", default=blog.hidden_dims,
                        help=f"the trunk's layer widths, e.g. 200 or 256,64 (default {','.join(map(str, blog.hidden_dims))})")
    parser.add_argument("--activation", choices=ACTIVATIONS, default=blog.activation, help=f"the trunk's activation (default {blog.activation})")


RECIPE_OPTIONS = ("--epochs", "--seed", "--curriculum", "--weighting", "--aggregator", "--optimizer", "--lr", "--batch-size", "--hidden", "--activation")


def recipe_options_given(argv: list[str]) -> set[str]:
    """The recipe's options named on the command line (``--lr 0.1`` and ``--lr=0.1`` alike)."""
    return {option for option in RECIPE_OPTIONS for token in argv if token == option or token.startswith(option + "=")}


def recipe_from(args: argparse.Namespace) -> Recipe:
    weighting = parse_weighting(args.weighting)
    config = TrainConfig(
        epochs=args.epochs, seed=args.seed, curriculum=args.curriculum, weighting=weighting, aggregator=args.aggregator,
        lr=args.lr, batch_size=args.batch_size,
    )
    return Recipe(config, tuple(args.hidden), args.activation)
