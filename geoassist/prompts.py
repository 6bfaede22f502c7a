"""Prompts from the task registry (documented in docs/PROMPTS.md).

Training recipes and :meth:`Assistant.ask` both build prompts here, from the templates of
:mod:`geoassist.tasks`, so inference always asks the way training taught.
"""

from __future__ import annotations

from geoassist.errors import GeoAssistError
from geoassist.tasks import TASKS, TaskSpec, get_task, list_tasks

__all__ = ["TASKS", "TaskSpec", "build_prompt", "list_tasks"]


def build_prompt(
    task: str | None, prompt: str, *, region: str | None = None, context: str | None = None
) -> str:
    """The user text for ``task`` (a name or alias) with ``prompt`` as its argument; free text
    when ``task`` is None.

    ``region`` is a formatted ``<box>…</box>`` for the ``region`` task; ``context`` the
    retrieved-passage block for the ``knowledge`` task (``geoassist.rag.context``).
    """
    if task is None:
        if not prompt.strip():
            raise GeoAssistError(
                "the prompt is empty; ask a question or pick a task (e.g. task='caption')"
            )
        return prompt
    return get_task(task).build(prompt, region=region, context=context)
