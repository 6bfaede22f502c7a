"""What every recipe is made of: its description, its outcomes, and how a record is written.

A recipe reads a dataset in the layout its authors publish. It lists cheap, JSON-able *items*
(one question, one labelled image, one image pair…) with :meth:`Recipe.items`, then turns each
item into outcomes with :meth:`Recipe.convert`: records, :class:`Reject` (a record that could
not be made, with a reason) and :class:`Dropped` (a part of a record, such as one box, that was
left out, with a reason). The builder counts all three, so nothing disappears unaccounted for.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from geoassist.chat import with_image_slots
from geoassist.errors import GeoAssistError
from geoassist.prompts import build_prompt
from geoassist.tasks import template_for_record_kind

from .schema import Record, validate_record

logger = logging.getLogger(__name__)


class RecipeError(GeoAssistError, ValueError):
    """A recipe cannot run: unknown name, missing files, or a layout it does not recognise."""


class DatasetNotFoundError(RecipeError, FileNotFoundError):
    """The files a recipe needs are not where the dataset's published layout puts them."""


class MissingDependencyError(RecipeError, ImportError):
    """A recipe needs an optional package that is not installed."""


@dataclass(frozen=True)
class RecipeInfo:
    """What ``geoassist data list`` shows for a recipe."""

    name: str
    title: str
    tasks: tuple[str, ...]
    licence: str
    citation: str
    layout: str  # the on-disk layout the recipe reads, as published
    splits: tuple[str, ...] = ()  # the official split names ("" when the layout has none)
    eval_only: bool = False
    checked_against: str = ""  # what the layout was checked against (real files or authors' docs)
    writes_files: bool = False  # the recipe writes images/masks into the output folder
    url: str = ""


@dataclass(frozen=True)
class Reject:
    """A record that was not written, and why (a short reason from :data:`REASONS` plus detail)."""

    id: str
    reason: str
    detail: str = ""


@dataclass(frozen=True)
class Dropped:
    """A part of a written record (one object, one caption) that was left out, and why."""

    id: str
    reason: str
    detail: str = ""


Outcome = Record | Reject | Dropped

# Reasons used across recipes, so manifests of different datasets can be compared.
REASONS = (
    "missing image",
    "unreadable image",
    "missing answer",
    "missing question",
    "inactive in source",
    "empty caption",
    "unknown class",
    "box outside the image",
    "degenerate geometry",
    "malformed line",
    "malformed annotation",
    "missing mask",
    "unreadable mask",
    "size mismatch",
    "duplicate id",
    "no labels",
    "invalid record",
)


@dataclass
class Context:
    """Where a conversion runs: the dataset root, the folder new files go to, and recipe options."""

    src: Path
    out: Path | None  # the (temporary) output folder; None when converting in memory
    options: dict[str, Any] = field(default_factory=dict)
    _sizes: dict[str, tuple[int, int] | None] = field(default_factory=dict, repr=False)
    _size_errors: dict[str, str] = field(default_factory=dict, repr=False)

    def image_size(self, rel: str) -> tuple[int, int] | None:
        """``(width, height)`` of an image under the dataset root from its header, cached; None if unreadable.

        :meth:`image_problem` then says why (``missing image`` or ``unreadable image``).
        """
        if rel not in self._sizes:
            if len(self._sizes) > 4096:  # keep memory bounded on huge datasets
                self._sizes.clear()
                self._size_errors.clear()
            path = self.src / rel
            if not path.is_file():
                self._sizes[rel] = None
                self._size_errors[rel] = "missing image"
            else:
                try:
                    from geoassist.io import read_header

                    self._sizes[rel] = read_header(path).size
                except Exception as exc:  # any decoder failure means the file is unusable
                    self._sizes[rel] = None
                    self._size_errors[rel] = f"unreadable image: {type(exc).__name__}: {exc}"[:300]
        return self._sizes[rel]

    def image_problem(self, rel: str) -> Reject | None:
        """A reject template for ``rel`` when it is missing or unreadable (id left empty)."""
        if self.image_size(rel) is not None:
            return None
        message = self._size_errors.get(rel, "missing image")
        reason = "missing image" if message == "missing image" else "unreadable image"
        return Reject("", reason, f"{rel}: {message}" if reason != "missing image" else rel)

    def reject_for(self, rid: str, rel: str) -> Reject | None:
        problem = self.image_problem(rel)
        return None if problem is None else Reject(rid, problem.reason, problem.detail)


class Recipe:
    """Base class: subclasses set :attr:`info` and implement :meth:`items` and :meth:`convert`."""

    info: ClassVar[RecipeInfo]

    def resolve_src(self, src: str | os.PathLike) -> Path:
        """The path ``--src`` stands for (a recipe whose ``--src`` may be a name or a spec overrides this)."""
        path = Path(src).expanduser()
        if path.exists() or not self.info.writes_files:  # geosynth's --src may be a spec, not a path
            path = path.resolve()
        return path

    def check(self, src: Path) -> None:
        """Raise :class:`DatasetNotFoundError` with a helpful message when ``src`` is not this dataset."""
        if not src.exists():
            raise DatasetNotFoundError(
                f"{src} does not exist; point --src at the {self.info.title} root ({self.info.layout})"
            )

    def detect(self, src: Path) -> bool:
        """Whether ``src`` looks like this dataset (used when no recipe is named)."""
        return False

    def available_splits(self, src: Path) -> list[str]:
        """Split names found under ``src`` (defaults to the official ones)."""
        return list(self.info.splits)

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        raise NotImplementedError


# --------------------------------------------------------------------------- registry

RECIPE_MODULES = (
    "vqa",
    "change",
    "objects",
    "segmentation",
    "geosynth",
    "benchmarks",
    "user",
    "captions",
    "scenes",
    "knowledge",
)

_REGISTRY: dict[str, Recipe] = {}
_LOADED = False


def register(cls: type[Recipe]) -> type[Recipe]:
    """Class decorator adding a recipe to the registry under ``cls.info.name``."""
    name = cls.info.name
    if name in _REGISTRY and type(_REGISTRY[name]) is not cls:
        raise RuntimeError(f"two recipes are named {name!r}")
    _REGISTRY[name] = cls()
    return cls


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for module in RECIPE_MODULES:
        importlib.import_module(f"{__package__}.recipes.{module}")
    _LOADED = True


def all_recipes() -> dict[str, Recipe]:
    _load_all()
    return dict(sorted(_REGISTRY.items()))


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    key = name.strip().lower().replace("-", "_")
    if key not in recipes:
        raise RecipeError(
            f"unknown recipe {name!r}; `geoassist data list` shows them: {', '.join(recipes)}"
        )
    return recipes[key]


def detect_recipe(src: Path) -> str:
    """The one recipe whose layout ``src`` has; raises when none or several match."""
    found = [name for name, recipe in all_recipes().items() if _safe_detect(recipe, src)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise RecipeError(
            f"{src} matches no recipe's layout; name the recipe (`geoassist data list` shows them)"
        )
    raise RecipeError(f"{src} matches several recipes ({', '.join(found)}); name the one to use")


def _safe_detect(recipe: Recipe, src: Path) -> bool:
    try:
        return bool(recipe.detect(src))
    except OSError:
        return False


# --------------------------------------------------------------------------- records


def user_prompt(
    task: str,
    argument: str = "",
    *,
    n_images: int = 1,
    region: str | None = None,
    oriented: bool = False,
) -> str:
    """The first user turn of a record of kind ``task``, written with the template of the
    registry's task for that kind (:func:`geoassist.tasks.template_for_record_kind`), so training
    asks as inference does. ``oriented`` picks the oriented-box template (``detect_obb``) where
    the kind has one; free kinds (``conversation``) take ``argument`` as it is."""
    spec = template_for_record_kind(task, oriented=oriented)
    text = build_prompt(spec.name if spec else None, argument, region=region)
    return with_image_slots(text, n_images)


def make_record(
    *,
    source: str,
    oid: str,
    split: str,
    task: str,
    images: Sequence[str],
    answer: str | list[str],
    argument: str = "",
    reply: str | None = None,
    qtype: str | None = None,
    targets: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
    region: str | None = None,
    oriented: bool = False,
) -> Record:
    """One validated record: the prompt from the task template, ``reply`` (default: the answer) as the assistant turn."""
    images = list(images)
    if reply is None:
        reply = answer if isinstance(answer, str) else answer[0]
    record = Record(
        id=f"{source}:{oid}",
        source=source,
        split=split,
        task=task,
        images=images,
        conversations=[
            {
                "role": "user",
                "content": user_prompt(
                    task, argument, n_images=len(images), region=region, oriented=oriented
                ),
            },
            {"role": "assistant", "content": reply},
        ],
        answer=answer,
        qtype=qtype,
        targets=targets or {},
        meta=meta or {},
    )
    validate_record(record)
    return record


def stable_pick(key: str, options: Sequence[Any], k: int = 1) -> list[Any]:
    """``k`` items of ``options`` chosen by a hash of ``key``: the same key always picks the same ones."""
    if not options or k <= 0:
        return []
    ranked = sorted(options, key=lambda o: hashlib.sha256(f"{key}\x00{o}".encode()).hexdigest())
    return ranked[:k]


def stable_index(key: str, n: int) -> int:
    """An index in ``range(n)`` chosen by a hash of ``key``."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:12], 16) % n


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` with forward slashes (the form records store)."""
    return path.relative_to(root).as_posix()


def split_filter(wanted: Sequence[str] | None, available: Sequence[str], recipe: str) -> list[str]:
    """The requested splits (all available when None); unknown names raise with the list of known ones."""
    if wanted is None:
        return list(available)
    unknown = [s for s in wanted if s not in available]
    if unknown:
        raise RecipeError(
            f"{recipe} has no split(s) {unknown} here; available: {list(available) or 'none found'}"
        )
    return [s for s in available if s in wanted]
