"""The `mpds` command line: one sub-command per module in `mpds.commands`."""

import argparse
import importlib
import sys

# Each name is a module `mpds.commands.<name>` exposing `register(subparsers)`, which adds its
# sub-parser and sets `func` to the function that runs it.
COMMANDS = ["build", "push", "stats", "download", "caption", "generate", "eval", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpds", description="Movie-poster datasets, models and evaluation.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"mpds.commands.{name}").register(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
