"""`emtwin` command line: one sub-command per module in `agent.commands`.

Each command module exposes `register(subparsers) -> None`, adding its parser with
`set_defaults(func=...)`; heavy imports happen inside `func` so `emtwin --help` stays quick.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from drivers.errors import DriverError

#: sub-command modules, in the order `emtwin --help` lists them
COMMAND_MODULES = (
    "run",
    "render",
    "segment",
    "train",
    "adapt",
    "serve",
    "keys",
    "bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="emtwin",
        description="SEM digital twin and autonomous-experiment agent.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"agent.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"agent.commands.{name}":
                raise
            continue  # command not built yet
        module.register(sub)
    return parser


class UsageError(Exception):
    """A bad command-line argument: printed as one line, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (UsageError, DriverError, ValueError, FileNotFoundError) as exc:
        print(f"emtwin {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emtwin {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
