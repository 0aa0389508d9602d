"""`annodistill <stage> ...`: the one entry point that Snakemake rules call, with explicit paths.

Each stage package owns its subcommands in `<stage>/cli.py` with a `register(subparsers)` function
that adds parsers whose `func(args)` does the work. Errors the user can fix (`InputError`) print
one line naming file, row and field and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import InputError

STAGES = ("data", "teacher", "students", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="annodistill", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        try:
            mod = importlib.import_module(f"annodistill.{stage}.cli")
        except ModuleNotFoundError as exc:  # a stage not built yet
            if exc.name != f"annodistill.{stage}.cli":
                raise
            continue
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rc = args.func(args)
    except InputError as exc:
        print(f"annodistill {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
