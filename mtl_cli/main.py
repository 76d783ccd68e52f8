"""mtl: single-task vs multi-task experiments, training on your CSV/TSV files, and predictions.

Every subcommand runs in PyTorch (torch_ref) or JAX (jax_impl); checkpoints written by one load in
the other. Bad input ends with one line on stderr and exit status 2, never a traceback; Ctrl-C ends
with one line and exit status 130.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from importlib import metadata

from mtl_cli import experiment, predict, train
from mtl_cli.devices import DEVICES
from mtl_cli.entry import INTERRUPTED

SUBCOMMANDS = {"experiment": experiment, "train": train, "predict": predict}
USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is one ``--help`` away)."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def version() -> str:
    try:
        return f"mtl {metadata.version('mtl-twins')}"
    except metadata.PackageNotFoundError:
        return "mtl (mtl-twins from a source tree, not installed)"


def add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    """Flags every subcommand takes, before or after its name: the subcommands' copies default to
    SUPPRESS, so that ``mtl --quiet train`` and ``mtl train --quiet`` mean the same."""
    parser.add_argument("--quiet", action="store_true", default=default(False), help="no progress bars or notes on stderr (for scripts)")
    parser.add_argument("--device", choices=DEVICES, default=default("auto"),
                        help="where the backends run: cpu, gpu (an error when there is none) or auto (a GPU when there is one; default)")


def build_parser() -> argparse.ArgumentParser:
    # No abbreviated options: a script's "--epoch" must not silently mean "--epochs".
    parser = OneLineParser(prog="mtl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version", version=version())
    add_global_flags(parser, lambda value: value)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=OneLineParser)
    for name, module in SUBCOMMANDS.items():
        summary = module.__doc__.strip().splitlines()[0]
        sub = commands.add_parser(
            name, help=summary, description=module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
        )
        add_global_flags(sub, lambda value: argparse.SUPPRESS)
        module.add_arguments(sub)
    return parser


def _quiet_stdout() -> None:
    """The reader of stdout went away (``mtl predict ... | head``): send what is left nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "mtl"
    try:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.default_int_handler)
        args = build_parser().parse_args(argv)
        args.argv, command = argv, f"mtl {args.command}"
        code = SUBCOMMANDS[args.command].run(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        _quiet_stdout()
        return 0
    except (ValueError, TypeError, OSError) as error:
        # The library raises these for bad input, with the file (and row) in the message.
        print(f"{command}: error: {one_line(error)}", file=sys.stderr)
        return USAGE_ERROR
