"""Entry point of the ``mtl`` command: one subcommand per module."""

from __future__ import annotations

import argparse
import sys

from mtl_cli import compare

SUBCOMMANDS = {"compare": compare}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mtl", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, module in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=module.__doc__.splitlines()[0])
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"mtl {args.command}: error: {error}", file=sys.stderr)
        return 2
