"""mtl: single-task vs multi-task experiments, training on your CSV/TSV files, and predictions.

Every subcommand runs in PyTorch (torch_ref) or JAX (jax_impl); checkpoints written by one load in
the other. Bad input ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from mtl_cli import experiment, predict, train

SUBCOMMANDS = {"experiment": experiment, "train": train, "predict": predict}
USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated options: a script's "--epoch" must not silently mean "--epochs".
    parser = OneLineParser(prog="mtl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes on stderr (for scripts)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        summary = module.__doc__.strip().splitlines()[0]
        sub = commands.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
        )
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (ValueError, TypeError, OSError) as error:
        # The library raises these for bad input, with the file (and row) in the message.
        print(f"mtl {args.command}: error: {one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"mtl {args.command}: interrupted", file=sys.stderr)
        return 130
