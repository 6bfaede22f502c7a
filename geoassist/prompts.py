"""The task prompt templates the model is trained with (documented in docs/PROMPTS.md).

Each task starts with a short tag in brackets so that one model can tell the
tasks apart without long instructions (a small LM learns tags faster than
paraphrases). Training recipes and :meth:`Assistant.ask` both build prompts
here, so inference always asks the way training taught.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoassist.errors import GeoAssistError


@dataclass(frozen=True)
class TaskPrompt:
    name: str
    template: str
    answer: str  # what the model answers with, for the docs
    needs_argument: bool = True
    images: str = "1"

    def build(self, argument: str = "", **fields: str) -> str:
        argument = argument.strip()
        if self.needs_argument and not argument:
            raise GeoAssistError(f"task {self.name!r} needs a prompt: {self.template}")
        return self.template.format(arg=argument, **fields)


TASKS: dict[str, TaskPrompt] = {
    t.name: t
    for t in [
        TaskPrompt(
            "caption",
            "[caption] Describe the image.",
            "one or more sentences",
            needs_argument=False,
        ),
        TaskPrompt(
            "vqa", "[vqa] {arg}", "a short answer: yes/no, a number, a class, an area in m2"
        ),
        TaskPrompt(
            "classify",
            "[classify] What kind of scene is this?",
            "one scene-class name",
            needs_argument=False,
        ),
        TaskPrompt(
            "ground", "[ground] {arg}", "`<ref>label</ref><box>…</box>…` for every match, or `none`"
        ),
        TaskPrompt(
            "detect", "[detect] {arg}", "`<ref>class</ref><box>…</box>…` per class, or `none`"
        ),
        TaskPrompt(
            "detect_obb",
            "[detect_obb] {arg}",
            "`<ref>class</ref><obox>…</obox>…` per class, or `none`",
        ),
        TaskPrompt(
            "refer",
            "[refer] {arg}",
            "one `<box>…</box>` for the object the expression picks out, or `none`",
        ),
        TaskPrompt(
            "region", "[region] {region} {arg}", "a description of the object in the given box"
        ),
        TaskPrompt(
            "change",
            "[change] What changed between the two images?",
            "a change caption, or that nothing changed",
            needs_argument=False,
            images="2",
        ),
        TaskPrompt("change_qa", "[change_qa] {arg}", "a short answer about the change", images="2"),
        TaskPrompt("segment", "[segment] {arg}", "`<mask>RxC|…</mask>` (text-as-mask), or `none`"),
        TaskPrompt(
            "knowledge",
            "[knowledge] {context}Question: {arg}",
            "an answer from the retrieved passages citing them as `[id]`, or that they do not answer it",
            images="0-1",
        ),
    ]
}


def list_tasks() -> list[str]:
    return list(TASKS)


def build_prompt(task: str | None, prompt: str, *, region: str | None = None, context: str | None = None) -> str:
    """The user text for ``task`` with ``prompt`` as its argument; free text when ``task`` is None.

    ``region`` is a formatted ``<box>…</box>`` for the ``region`` task; ``context`` the
    retrieved-passage block for the ``knowledge`` task (``geoassist.rag.context``).
    """
    if task is None:
        if not prompt.strip():
            raise GeoAssistError(
                "the prompt is empty; ask a question or pick a task (e.g. task='caption')"
            )
        return prompt
    try:
        spec = TASKS[task]
    except KeyError:
        raise GeoAssistError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}") from None
    if task == "region":
        if not region:
            raise GeoAssistError(
                "task 'region' needs a region: pass region=[x1, y1, x2, y2] in pixels"
            )
        return spec.template.format(
            region=region, arg=prompt.strip() or "Describe this region."
        ).strip()
    if task == "knowledge":
        if context is None:
            raise GeoAssistError(
                "task 'knowledge' needs retrieved passages: give the assistant a knowledge store "
                "(kb='default', CLI --kb default)"
            )
        return spec.build(prompt, context=context.rstrip("\n") + "\n")
    return spec.build(prompt)
