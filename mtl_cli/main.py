"""mtl: single-task vs multi-task experiments, training on your CSV/TSV files, and predictions.

Every subcommand runs in PyTorch (torch_ref) or JAX (jax_impl); checkpoints written by one load in
the other. Bad input ends with one line on stderr and exit status 2, never a traceback; Ctrl-C ends
with one line and exit status 130.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
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
INTERRUPT_AGAIN_S = 0.01  # see _interrupts_kept


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
    parser.subcommands = commands.choices  # {name: its parser}: for errors that name the subcommand's --help
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """The arguments; an option the subcommand does not take is its error (pointing at its --help), not mtl's."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.subcommands[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _quiet_stdout() -> None:
    """The reader of stdout went away (``mtl predict ... | head``): send what is left nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


@contextlib.contextmanager
def _interrupts_kept():
    """Within: a Ctrl-C that Python could only print, not raise, interrupts the main code after all.

    Why: a KeyboardInterrupt raised inside a garbage-collector callback (jax registers one) or a
    ``__del__`` is "ignored": printed as a traceback while the run goes on. The hook below has the
    main thread interrupted again a moment later, from another thread: by then it runs the main code
    (interrupted from the hook itself, it would raise inside the hook, ignored once more).
    """
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            again = threading.Timer(INTERRUPT_AGAIN_S, _thread.interrupt_main)
            again.daemon = True
            again.start()
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    on_main_thread = threading.current_thread() is threading.main_thread()  # signals reach that thread only
    with _interrupts_kept() if on_main_thread else contextlib.nullcontext():
        return _run(argv, on_main_thread)


def _run(argv: list[str], on_main_thread: bool) -> int:
    command = "mtl"
    try:
        if on_main_thread:
            signal.signal(signal.SIGINT, signal.default_int_handler)
        args = parse(argv)
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
