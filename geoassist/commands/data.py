"""`geoassist data`: list recipes, build one, mix built outputs, inspect an output."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="turn public EO datasets into instruction records (list, build, mix, inspect)",
        description="Data recipes: public remote-sensing datasets → one instruction-record schema (docs/DATA.md).",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION")

    p = sub.add_parser("list", help="recipes with their tasks, licence and citation")
    p.add_argument("--json", action="store_true", help="print the descriptions as JSON")
    p.add_argument(
        "--long", action="store_true", help="also print each recipe's layout and citation"
    )
    p.set_defaults(func=run_list)

    p = sub.add_parser(
        "build", help="run a recipe on a dataset folder", description=build_description()
    )
    p.add_argument("recipe", help="recipe name (see `geoassist data list`)")
    p.add_argument(
        "--src", required=True, help="the dataset's root folder, as its authors publish it"
    )
    p.add_argument("--out", required=True, help="output folder (Parquet shards + manifest.json)")
    p.add_argument("--splits", nargs="+", metavar="SPLIT", help="only these official splits")
    p.add_argument(
        "--workers", type=int, default=1, help="processes converting items (output is identical)"
    )
    p.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe option (repeatable), e.g. --option tile_size=512; values are read as JSON when they parse",
    )
    p.set_defaults(func=run_build)

    p = sub.add_parser(
        "mix", help="weighted mixture of built outputs with caps, dedupe and a leak check"
    )
    p.add_argument(
        "config",
        help="YAML file: sources (path, weight, max_records, splits, tasks), eval sources, seed",
    )
    p.add_argument("--out", required=True, help="output folder for the mixture")
    p.set_defaults(func=run_mix)

    p = sub.add_parser(
        "inspect", help="counts, a few rendered records and a preview PNG of an output"
    )
    p.add_argument("folder", help="a recipe or mix output folder")
    p.add_argument("-n", type=int, default=3, help="records to print")
    p.add_argument("--split", help="only this split")
    p.add_argument("--task", help="only this task")
    p.add_argument("--preview", help="write a preview PNG here (default FOLDER/preview.png)")
    p.add_argument("--no-preview", action="store_true", help="do not draw a preview")
    p.set_defaults(func=run_inspect)

    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def build_description() -> str:
    return (
        "Read the dataset at --src in its published layout and write records of the one schema to --out. "
        "The output appears only when complete; manifest.json counts what was read, written and rejected (with reasons)."
    )


def _options(pairs: list[str]) -> dict:
    from geoassist.data_recipes import RecipeError

    options = {}
    for pair in pairs:
        if "=" not in pair:
            raise RecipeError(f"--option takes KEY=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            options[key.strip()] = json.loads(value)
        except ValueError:
            options[key.strip()] = value
    return options


def run_list(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from geoassist.data_recipes import list_recipes

    infos = list_recipes()
    if args.json:
        print(json.dumps([asdict(i) for i in infos], indent=2))
        return 0
    width = max(len(i.name) for i in infos)
    for info in infos:
        flag = " [eval only]" if info.eval_only else ""
        print(f"{info.name:<{width}}  {', '.join(info.tasks)}{flag}")
        print(f"{'':<{width}}  licence: {info.licence}")
        if args.long:
            for label, text in (
                ("layout", info.layout),
                ("citation", info.citation),
                ("checked", info.checked_against),
            ):
                wrapped = textwrap.wrap(text, 100 - width - 14)
                for n, line in enumerate(wrapped):
                    print(f"{'':<{width}}  {label + ':' if n == 0 else '':<10}{line}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from geoassist.data_recipes import build

    manifest = build(
        args.recipe,
        args.src,
        args.out,
        splits=args.splits,
        workers=args.workers,
        options=_options(args.option),
    )
    print(
        f"{manifest['recipe']}: read {manifest['read']}, wrote {manifest['written']}, "
        f"rejected {manifest['rejected_total']} -> {Path(args.out)}"
    )
    for key in ("by_split", "by_task", "by_qtype", "rejected", "dropped"):
        if manifest[key]:
            print(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in manifest[key].items()))
    return 0


def run_mix(args: argparse.Namespace) -> int:
    from geoassist.data_recipes.mix import mix

    manifest = mix(args.config, args.out)
    print(
        f"mix: wrote {manifest['written']} records from {len(manifest['sources'])} source(s) -> {args.out}"
    )
    for key in ("by_source", "by_split", "duplicates_removed", "leaks_removed"):
        if manifest.get(key):
            value = manifest[key]
            print(
                f"  {key}: "
                + (
                    ", ".join(f"{k} {v}" for k, v in value.items())
                    if isinstance(value, dict)
                    else str(value)
                )
            )
    return 0


def run_inspect(args: argparse.Namespace) -> int:
    from geoassist.data_recipes.inspect import inspect

    preview = None if args.no_preview else (args.preview or str(Path(args.folder) / "preview.png"))
    print(inspect(args.folder, n=args.n, split=args.split, task=args.task, preview=preview))
    return 0
