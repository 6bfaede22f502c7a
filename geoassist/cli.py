"""The `geoassist` command line.

Each subcommand lives in a module that exposes ``register(subparsers)``; the
module adds its parser and sets ``func`` to a typed function that does the work.
Modules are imported lazily by name so that `geoassist --help` stays fast and a
subcommand's heavy imports (torch, transformers) happen only when it runs.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from geoassist import __version__
from geoassist.errors import GeoAssistError

# Modules that add subcommands, in the order `--help` lists them.
SUBCOMMAND_MODULES: list[str] = [
    "geoassist.commands.core",
    "geoassist.synth.cli",
    "geoassist.commands.eval",
    "geoassist.commands.train",
    "geoassist.commands.data",
    "geoassist.commands.export",
    "geoassist.commands.batch",
    "geoassist.commands.kb",
    "geoassist.commands.serve",
    "geoassist.commands.probe",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="geoassist",
        description="GeoAssist: a vision-language assistant for Earth-observation imagery.",
    )
    parser.add_argument("--version", action="version", version=f"geoassist {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse cannot split one nargs="+" positional around options (`ask IMG --task caption ""`);
    # a subcommand that names its positional in `trailing_positionals` gets such leftovers back.
    field = getattr(args, "trailing_positionals", None)
    if extra and field and not any(e.startswith("-") and e != "-" for e in extra):
        setattr(args, field, [*getattr(args, field), *extra])
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=[logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)],
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GeoAssistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        if str(exc):  # e.g. a training pipeline saying how to resume
            print(str(exc), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
