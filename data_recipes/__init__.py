"""Data recipes: public Earth-observation datasets → one instruction-record schema, nothing lost.

Each recipe reads a dataset in the layout its authors publish and writes records of the one
schema in :mod:`geoassist.data_recipes.schema` (documented in ``docs/DATA.md``)::

    from geoassist.data_recipes import build, read_records, image_root

    manifest = build("rsvqa_lr", "RSVQA_LR", "out/rsvqa_lr")
    for record in read_records("out/rsvqa_lr", split="test"):
        path = resolve_image(record, image_root("out/rsvqa_lr"))

``load_records`` also takes a raw dataset folder and converts it in memory. The command line
is ``geoassist data list | build | mix | inspect``.
"""

from __future__ import annotations

from .build import build
from .core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    MissingDependencyError,
    Recipe,
    RecipeError,
    RecipeInfo,
    Reject,
    all_recipes,
    detect_recipe,
    get_recipe,
    make_record,
    user_prompt,
)
from .schema import TASKS, Record, RecordError, from_row, to_row, validate_record
from .store import (
    as_dataset,
    image_root,
    load_records,
    load_target_mask,
    read_manifest,
    read_records,
    resolve_image,
)


def list_recipes() -> list[RecipeInfo]:
    """Every recipe's description (name, tasks, licence, citation, layout), sorted by name."""
    return [recipe.info for recipe in all_recipes().values()]


__all__ = [
    "TASKS",
    "Context",
    "DatasetNotFoundError",
    "Dropped",
    "MissingDependencyError",
    "Recipe",
    "RecipeError",
    "RecipeInfo",
    "Record",
    "RecordError",
    "Reject",
    "as_dataset",
    "build",
    "detect_recipe",
    "from_row",
    "get_recipe",
    "image_root",
    "list_recipes",
    "load_records",
    "load_target_mask",
    "make_record",
    "read_manifest",
    "read_records",
    "resolve_image",
    "to_row",
    "user_prompt",
    "validate_record",
]
