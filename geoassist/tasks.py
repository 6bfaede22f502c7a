"""The task registry: every task GeoAssist knows, named once (documented in docs/PROMPTS.md).

A task is what a user asks for (``task="detect"``). Its :class:`TaskSpec` says everything the
rest of the project needs to know about it:

- how it is asked: the prompt template (a short tag in brackets, so one model tells the tasks
  apart without long instructions) and what fills it;
- how it is trained: the *record kinds* of ``geoassist.data_recipes`` whose first user turn the
  template writes (``detection`` records for ``detect``, ``scene_cls`` records for
  ``classify``…);
- how it is scored: the scorer's name in ``geoassist.eval.scorers`` (looked up by eval, so this
  module imports nothing of it), the ``geoassist eval`` task names that score it, and the
  default answer-length budget;
- how a large scene is answered: the merge rule of the large-scene planner;
- how the app offers it: the menu label and the prompt box's hint.

Prompts (``geoassist.prompts``), recipes, eval, the large-scene planner, the app and the docs
table all read :data:`TASKS`; adding a task is one entry here plus, when no existing scorer
fits, its scorer. ``python -m geoassist.tasks --markdown`` prints the docs' tables.
"""

from __future__ import annotations

import argparse
import os
import re
import string
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from geoassist.errors import GeoAssistError

MERGE_RULES: dict[str, str] = {
    "text": "the text answers merged: additive numbers summed over the tiles, yes/no questions "
    "'yes' when any tile says yes, captions summarised from the overview and the tiles, anything "
    "else from the overview",
    "count": "the objects detected in every tile and the merged detections counted (used for "
    "'how many' questions of a `text` task)",
    "detections": "the union of every tile's geometry, duplicates across tile edges merged",
    "single": "one answer: the one best match across the tiles, or one window read around the "
    "given region",
    "mask": "the tiles' masks mosaicked into one mask of the scene",
    "whole": "answered from a downscaled overview of the whole scene only",
}
"""The large-scene merge rules (``TaskSpec.merge``). A free prompt (no task) merges as ``text``;
under ``text`` the planner answers "how many X" questions by the ``count`` rule."""

ANSWER_KINDS: dict[str, str] = {
    "text": "sentences",
    "short": "a short answer: yes/no, a number, a class or an area",
    "class": "one class name",
    "boxes": "boxes in the answer grammar",
    "oboxes": "oriented boxes in the answer grammar",
    "polygons": "polygons in the answer grammar",
    "mask": "a text-as-mask grid",
}
"""What a task's answer is (``TaskSpec.answer_kind``); see docs/FORMATS.md for the grammar."""

GEOMETRY_ANSWER_KINDS = ("boxes", "oboxes", "polygons", "mask")

IMAGE_COUNTS = ("0", "1", "2", "0-1", "1+")
"""``TaskSpec.images``: how many images a request of the task holds."""

FREE_RECORD_KINDS = ("conversation",)
"""Record kinds whose turns are written as they are, with no task template (multi-turn chats)."""

TEMPLATE_FIELDS = {
    "arg": "the user's prompt",
    "region": "a formatted <box>…</box>: pass region=[x1, y1, x2, y2] in pixels",
    "context": "the retrieved passages: give the assistant a knowledge store "
    "(kb='default', CLI --kb default)",
}


class UnknownTaskError(GeoAssistError, ValueError):
    """A task name (or alias) that the registry does not hold."""


class TaskRegistryError(GeoAssistError, ValueError):
    """A registry entry breaks a rule (a programming error in an entry, found at import)."""


@dataclass(frozen=True)
class TaskSpec:
    """One task; see the module docstring. ``eval_tasks`` defaults to one per record kind."""

    name: str
    template: str  # "{arg}" is the user's prompt; "{region}" / "{context}" see TEMPLATE_FIELDS
    answer: str  # what the model answers with, for the docs
    record_kinds: tuple[str, ...]  # data_recipes record tasks whose prompts this template writes
    answer_kind: str  # a key of ANSWER_KINDS
    scorer: str  # a name in geoassist.eval.scorers.SCORERS
    max_new_tokens: int  # long enough for a complete answer in the grammar
    merge: str  # a key of MERGE_RULES
    aliases: tuple[str, ...] = ()
    needs_argument: bool = True
    default_argument: str = ""  # what fills {arg} when the prompt is empty
    argument_format: str = "{}"  # how a given argument is written into {arg} ("One of: {}.")
    images: str = "1"  # one of IMAGE_COUNTS
    eval_tasks: tuple[str, ...] = ()  # `geoassist eval` tasks scoring its records
    label: str = ""  # the app's menu entry ("" keeps it out of the menu)
    hint: str = ""  # the app's prompt-box placeholder

    def __post_init__(self) -> None:
        if not self.eval_tasks:
            object.__setattr__(self, "eval_tasks", tuple(self.record_kinds))

    @property
    def takes_argument(self) -> bool:
        """Whether the prompt fills ``{arg}``: required, defaulted, or optional (``argument_format``)."""
        return self.needs_argument or bool(self.default_argument) or self.argument_format != "{}"

    @property
    def fields(self) -> tuple[str, ...]:
        """The template's placeholders, in order (``arg``, ``region``, ``context``)."""
        return tuple(f for _, f, _, _ in string.Formatter().parse(self.template) if f is not None)

    def build(
        self, argument: str = "", *, region: str | None = None, context: str | None = None
    ) -> str:
        """The prompt text: the template filled with ``argument`` (and the region or passages)."""
        values: dict[str, str] = {}
        if "region" in self.fields:
            if not region:
                raise GeoAssistError(
                    f"task {self.name!r} needs a region: pass region=[x1, y1, x2, y2] in pixels"
                )
            values["region"] = region
        if "context" in self.fields:
            if context is None:
                raise GeoAssistError(
                    f"task {self.name!r} needs retrieved passages: give the assistant a "
                    "knowledge store (kb='default', CLI --kb default)"
                )
            values["context"] = context.rstrip("\n") + "\n"
        argument = argument.strip()
        if argument and self.argument_format != "{}":
            argument = self.argument_format.format(argument.rstrip(". "))
        argument = argument or self.default_argument
        if self.needs_argument and not argument:
            raise GeoAssistError(f"task {self.name!r} needs a prompt: {self.template}")
        return self.template.format(arg=argument, **values).strip()


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec(
            "caption", "[caption] Describe the image.", "one or more sentences",
            record_kinds=("caption",), answer_kind="text", scorer="caption",
            max_new_tokens=64, merge="text", needs_argument=False,
            label="Describe", hint="Optional — press Send to describe the image",
        ),
        TaskSpec(
            "vqa", "[vqa] {arg}", "a short answer: yes/no, a number, a class, an area in m2",
            record_kinds=("vqa", "counting"), answer_kind="short", scorer="qa",
            max_new_tokens=16, merge="text", aliases=("counting",), eval_tasks=("rsvqa",),
            label="Ask a question", hint="A short question, e.g. How many ships are there?",
        ),
        TaskSpec(
            "classify", "[classify] What kind of scene is this? {arg}",
            "one scene-class name (one of the listed classes when the prompt lists them)",
            record_kinds=("scene_cls",), answer_kind="class", scorer="scene_cls",
            max_new_tokens=16, merge="whole", aliases=("scene_cls",), needs_argument=False,
            argument_format="One of: {}.", label="Classify the scene",
            hint="Optional — the classes to choose from, e.g. forest, river, farmland",
        ),
        TaskSpec(
            "ground", "[ground] {arg}",
            "`<ref>label</ref><box>…</box>…` for every match, or `none`",
            record_kinds=("grounding",), answer_kind="boxes", scorer="grounding",
            max_new_tokens=128, merge="detections", aliases=("grounding",),
            eval_tasks=("grounding", "referring"),
        ),
        TaskSpec(
            "detect", "[detect] {arg}", "`<ref>class</ref><box>…</box>…` per class, or `none`",
            record_kinds=("detection",), answer_kind="boxes", scorer="detection",
            max_new_tokens=384, merge="detections", aliases=("detection",),
            label="Find objects", hint="What to find, e.g. buildings, ships, storage tanks",
        ),
        TaskSpec(
            "detect_obb", "[detect_obb] {arg}",
            "`<ref>class</ref><obox>…</obox>…` per class, or `none`",
            record_kinds=("detection",), answer_kind="oboxes", scorer="detection",
            max_new_tokens=384, merge="detections",
            label="Find objects (rotated boxes)", hint="What to find, e.g. ships, planes",
        ),
        TaskSpec(
            "refer", "[refer] {arg}",
            "one `<box>…</box>` for the object the expression picks out, or `none`",
            record_kinds=("referring",), answer_kind="boxes", scorer="grounding",
            max_new_tokens=48, merge="single", aliases=("referring",),
            eval_tasks=("referring", "grounding"),
            label="Find what I describe", hint="e.g. the largest building near the road",
        ),
        TaskSpec(
            "region", "[region] {region} {arg}", "a description of the object in the given box",
            record_kinds=("region_caption",), answer_kind="text", scorer="caption",
            max_new_tokens=64, merge="single", aliases=("region_caption",),
            default_argument="Describe this region.",
            label="Point at a region", hint="Optional question about the marked region",
        ),
        TaskSpec(
            "change", "[change] What changed between the two images?",
            "a change caption, or that nothing changed",
            record_kinds=("change_caption",), answer_kind="text", scorer="caption",
            max_new_tokens=64, merge="whole", aliases=("change_caption",),
            needs_argument=False, images="2",
            label="What changed", hint="Optional — press Send to compare the two images",
        ),
        TaskSpec(
            "change_qa", "[change_qa] {arg}", "a short answer about the change",
            record_kinds=("change_qa",), answer_kind="short", scorer="qa",
            max_new_tokens=16, merge="whole", images="2", eval_tasks=("change_qa", "rsvqa"),
            label="Ask about the change", hint="e.g. Were new buildings built?",
        ),
        TaskSpec(
            "segment", "[segment] {arg}", "`<mask>RxC|…</mask>` (text-as-mask), or `none`",
            record_kinds=("refer_seg",), answer_kind="mask", scorer="refer_seg",
            max_new_tokens=512, merge="mask", aliases=("refer_seg",),
            label="Outline", hint="What to outline, e.g. water, forest, buildings",
        ),
        TaskSpec(
            "change_seg", "[change_seg] Outline what changed between the two images.",
            "`<mask>RxC|…</mask>` of the changed areas (the region decoder's mask at its `<seg>`), "
            "or `none`",
            record_kinds=("change_seg",), answer_kind="mask", scorer="change_seg",
            max_new_tokens=512, merge="mask", aliases=("change_mask",), needs_argument=False,
            images="2", label="Outline the changes",
            hint="Optional — press Send to outline what changed",
        ),
        TaskSpec(
            "knowledge", "[knowledge] {context}Question: {arg}",
            "an answer from the retrieved passages that cites them as `[id]`, or that they do "
            "not answer it",
            record_kinds=("knowledge_qa",), answer_kind="text", scorer="knowledge",
            max_new_tokens=64, merge="whole", aliases=("knowledge_qa",), images="0-1",
            eval_tasks=("knowledge",),
            label="Ask the knowledge store",
            hint="A question answered from the knowledge store",
        ),
    ]
}  # fmt: skip
"""Every task, in the order the docs, the CLI and the app list them."""


# ------------------------------------------------------------------------------ lookups


def _key(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def get_task(name_or_alias: str) -> TaskSpec:
    """The task called ``name_or_alias`` (a name or one of its aliases, any case, ``-`` or ``_``)."""
    if isinstance(name_or_alias, str):
        key = _key(name_or_alias)
        if key in TASKS:
            return TASKS[key]
        for spec in TASKS.values():
            if key in spec.aliases:
                return spec
    aliases = ", ".join(f"{a} ({s.name})" for s in TASKS.values() for a in s.aliases)
    raise UnknownTaskError(
        f"unknown task {name_or_alias!r}; choose one of {', '.join(TASKS)}"
        + (f" or an alias: {aliases}" if aliases else "")
    )


_LEADING_TAG = re.compile(r"^\s*(?:<image>\s*)*\[([A-Za-z_-]+)\]")


def task_of_prompt(prompt: str) -> str | None:
    """The task whose tag opens ``prompt`` (``"[segment] the lake"`` → ``segment``), as a prompt
    written from a template carries it; None when it opens with no known tag."""
    match = _LEADING_TAG.match(prompt or "")
    if match is None:
        return None
    try:
        return get_task(match.group(1)).name
    except UnknownTaskError:
        return None


def list_tasks() -> list[str]:
    """The task names, in registry order."""
    return list(TASKS)


def tasks_for_record_kind(kind: str) -> tuple[TaskSpec, ...]:
    """The tasks whose template writes records of ``kind`` (empty for free kinds such as
    ``conversation``, and for kinds no task knows)."""
    return tuple(spec for spec in TASKS.values() if kind in spec.record_kinds)


def record_kinds() -> tuple[str, ...]:
    """Every record kind a record may have: the tasks' kinds in registry order, then the free ones."""
    kinds = dict.fromkeys(k for spec in TASKS.values() for k in spec.record_kinds)
    return (*kinds, *(k for k in FREE_RECORD_KINDS if k not in kinds))


def template_for_record_kind(kind: str, *, oriented: bool = False) -> TaskSpec | None:
    """The task whose template writes the first user turn of a record of ``kind``.

    ``oriented`` picks the oriented-box task where a kind has one (``detection`` →
    ``detect_obb``). None for free kinds (the prompt is written as it is); an unknown kind
    raises :class:`UnknownTaskError`.
    """
    candidates = tasks_for_record_kind(kind)
    if not candidates:
        if kind in FREE_RECORD_KINDS:
            return None
        raise UnknownTaskError(
            f"unknown record kind {kind!r}; record kinds: {', '.join(record_kinds())}"
        )
    wanted = [s for s in candidates if (s.answer_kind == "oboxes") == oriented]
    return (wanted or list(candidates))[0]


def merge_rule(task: str | None) -> str:
    """The large-scene merge rule of ``task``; a free prompt (None) merges as ``text``."""
    return "text" if task is None else get_task(task).merge


# ---------------------------------------------------------------------------- checking


def check_registry(tasks: Mapping[str, TaskSpec] | None = None) -> None:
    """Raise :class:`TaskRegistryError` naming the first rule an entry of ``tasks`` breaks."""
    tasks = TASKS if tasks is None else tasks
    names: dict[str, str] = {}
    scorer_of_kind: dict[str, tuple[str, str]] = {}
    for key, spec in tasks.items():
        where = f"task {spec.name!r}"
        if key != spec.name or _key(spec.name) != spec.name:
            raise TaskRegistryError(f"{where}: registered as {key!r}; use a lower-case name")
        for name in (spec.name, *spec.aliases):
            if name in names:
                raise TaskRegistryError(f"{where}: {name!r} already names task {names[name]!r}")
            names[name] = spec.name
        checks = [
            (spec.merge in MERGE_RULES, f"merge {spec.merge!r} is not one of {list(MERGE_RULES)}"),
            (
                spec.answer_kind in ANSWER_KINDS,
                f"answer_kind {spec.answer_kind!r} is not one of {list(ANSWER_KINDS)}",
            ),
            (spec.images in IMAGE_COUNTS, f"images {spec.images!r} is not one of {IMAGE_COUNTS}"),
            (spec.max_new_tokens > 0, "max_new_tokens must be positive"),
            (bool(spec.scorer), "needs a scorer (a name in geoassist.eval.scorers.SCORERS)"),
            (bool(spec.record_kinds), "needs at least one record kind"),
            (
                set(spec.fields) <= set(TEMPLATE_FIELDS),
                f"template fields {spec.fields} must be among {list(TEMPLATE_FIELDS)}",
            ),
            (
                ("arg" in spec.fields) == spec.takes_argument,
                "a template has {arg} exactly when the task takes an argument (required, with a "
                "default, or optional with an argument_format)",
            ),
            (
                spec.template.startswith(f"[{spec.name}]"),
                f"the template starts with the tag [{spec.name}]",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise TaskRegistryError(f"{where}: {message}")
        for kind in spec.record_kinds:
            if kind in FREE_RECORD_KINDS:
                raise TaskRegistryError(f"{where}: record kind {kind!r} is a free kind")
            other = scorer_of_kind.setdefault(kind, (spec.scorer, spec.name))
            if other[0] != spec.scorer:
                raise TaskRegistryError(
                    f"{where}: record kind {kind!r} is scored by {spec.scorer!r} here but by "
                    f"{other[0]!r} in task {other[1]!r}; one kind has one scorer"
                )


check_registry()


# ------------------------------------------------------------------------------- docs

DOC_BEGIN = "<!-- task table: generated by `python -m geoassist.tasks --markdown` -->"
DOC_END = "<!-- end of task table -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown(tasks: Iterable[TaskSpec] | None = None) -> str:
    """The docs' task tables (prompts, then training/scoring/large scenes), between the markers."""
    specs = list(TASKS.values() if tasks is None else tasks)
    lines = [
        DOC_BEGIN,
        "",
        "| task | images | template | the model answers with |",
        "|---|---|---|---|",
    ]
    for s in specs:
        lines.append(
            f"| `{s.name}` | {s.images.replace('-', '–')} | `{_cell(s.template)}` | {_cell(s.answer)} |"
        )
    lines += [
        "",
        "| task | aliases | record kinds | answer kind | scorer | `geoassist eval` "
        "| max new tokens | large scene |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in specs:
        aliases = ", ".join(f"`{a}`" for a in s.aliases) or "—"
        kinds = ", ".join(f"`{k}`" for k in s.record_kinds)
        evals = ", ".join(f"`{e}`" for e in s.eval_tasks)
        lines.append(
            f"| `{s.name}` | {aliases} | {kinds} | {s.answer_kind} | `{s.scorer}` | {evals} "
            f"| {s.max_new_tokens} | {s.merge} |"
        )
    lines += ["", "Large-scene merge rules:", ""]
    lines += [f"- `{rule}`: {text}." for rule, text in MERGE_RULES.items()]
    lines += ["", DOC_END]
    return "\n".join(lines) + "\n"


def doc_table(text: str) -> str | None:
    """The generated block inside a document's ``text`` (markers included); None when absent."""
    start = text.find(DOC_BEGIN)
    end = text.find(DOC_END, start)
    if start < 0 or end < 0:
        return None
    return text[start : end + len(DOC_END)] + "\n"


def update_doc(path: str | os.PathLike) -> bool:
    """Rewrite the generated block of the document at ``path`` (atomically); True if it changed."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    old = doc_table(text)
    if old is None:
        raise GeoAssistError(
            f"{path} has no task table; put the lines {DOC_BEGIN!r} and {DOC_END!r} where it goes"
        )
    new = markdown()
    if old == new:
        return False
    start = text.find(DOC_BEGIN)
    updated = text[:start] + new + text[start + len(old) :]
    from geoassist.atomic import replace_file

    replace_file(path, updated)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geoassist.tasks", description="The task registry's tables for the docs."
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--markdown", action="store_true", help="print the tables")
    group.add_argument(
        "--update", type=Path, metavar="DOC", help="rewrite the tables in DOC (docs/PROMPTS.md)"
    )
    args = parser.parse_args(argv)
    if args.markdown:
        sys.stdout.write(markdown())
        return 0
    try:
        changed = update_doc(args.update)
    except (GeoAssistError, OSError) as exc:
        parser.exit(2, f"error: {exc}\n")
    print(f"{args.update}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
