"""The app's side of a request: limits, checks with messages a user can act on, and the call.

:class:`Engine` wraps one loaded :class:`~geoassist.assistant.Assistant` for every
session of the app. It knows nothing about Gradio, so the UI, the ``ask`` API
endpoint and the tests share one path from a request to a streamed answer.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoassist.app.inputs import BandChoice, InputError
from geoassist.errors import GeoAssistError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskChoice:
    label: str  # what the user picks
    task: str | None  # the prompt template (None: the prompt is sent as written)
    hint: str  # what to type, shown as the prompt box's placeholder


def all_task_choices() -> tuple[TaskChoice, ...]:
    """The free chat, then every task of the registry (:mod:`geoassist.tasks`) with a menu label."""
    from geoassist.tasks import TASKS

    chat = TaskChoice("Chat", None, "Ask anything about the image…")
    return (chat, *(TaskChoice(t.label, t.name, t.hint) for t in TASKS.values() if t.label))


@dataclass
class Limits:
    """What one request may ask for; enforced before the model sees anything."""

    max_prompt_chars: int = 2000
    timeout_s: float = 120.0
    max_new_tokens: int = 256
    display_side: int = 1024  # longest side of the quicklook shown, in pixels
    concurrency: int = 2  # answers generated at once; more requests wait in the queue


class Engine:
    """One model serving every session; see the module docstring."""

    def __init__(
        self,
        assistant: Any,
        *,
        model_name: str,
        load_s: float = 0.0,
        limits: Limits | None = None,
        kb_name: str | None = None,
    ) -> None:
        self.assistant = assistant
        self.model_name = model_name
        self.load_s = load_s
        self.limits = limits or Limits()
        self.kb_name = kb_name

    @classmethod
    def load(
        cls,
        model: str,
        *,
        device: str | None = None,
        kb: str | None = None,
        kb_k: int = 5,
        limits: Limits | None = None,
    ) -> Engine:
        """Load ``model`` (a preset, a published name, a folder or a hub id), timing it."""
        from geoassist.assistant import Assistant

        options: dict[str, Any] = {"device": device}
        if kb:
            if "kb" not in inspect.signature(Assistant.from_pretrained).parameters:
                raise GeoAssistError(
                    "--kb needs the knowledge store (geoassist.rag), which this installation "
                    "lacks; start without --kb"
                )
            options.update(kb=kb, kb_k=kb_k)
        start = time.perf_counter()
        assistant = Assistant.from_pretrained(model, **options)
        return cls(
            assistant,
            model_name=model,
            load_s=time.perf_counter() - start,
            limits=limits,
            kb_name=kb,
        )

    # ---------------------------------------------------------------- facts
    @property
    def max_images(self) -> int:
        return int(self.assistant.config.projector.max_images)

    @property
    def has_kb(self) -> bool:
        return getattr(self.assistant, "kb", None) is not None

    @property
    def device(self) -> str:
        return str(getattr(self.assistant, "device", "cpu"))

    def status_line(self) -> str:
        kb = f"knowledge store: {self.kb_name}" if self.has_kb else "no knowledge store"
        return (
            f"model **{self.model_name}** · {self.device} · loaded in {self.load_s:.1f} s · {kb}"
            f" · up to {self.max_images} images"
        )

    def task_choices(self) -> list[TaskChoice]:
        """The tasks this model and installation offer (the knowledge task only with a store)."""
        return [c for c in all_task_choices() if c.task != "knowledge" or self.has_kb]

    def task_for(self, label: str | None) -> str | None:
        for choice in all_task_choices():
            if label in (choice.label, choice.task):
                return choice.task
        if not label:
            return None
        raise InputError(
            f"unknown task {label!r}; pick one of: "
            + ", ".join(c.task or c.label for c in self.task_choices())
        )

    # ---------------------------------------------------------------- checks
    def check(
        self, prompt: str, task: str | None, n_images: int, region: Sequence[float] | None
    ) -> str:
        """Raise :class:`InputError` with what to do when the request cannot be answered."""
        from geoassist.prompts import TASKS

        prompt = (prompt or "").strip()
        limit = self.limits.max_prompt_chars
        if len(prompt) > limit:
            raise InputError(
                f"the prompt is {len(prompt):,} characters long; the limit is {limit:,}. "
                "Shorten it and send again"
            )
        if n_images > self.max_images:
            raise InputError(f"{n_images} images given; this model takes at most {self.max_images}")
        spec = TASKS.get(task) if task else None
        if task is None:
            if not prompt:
                raise InputError("type a question, or pick a task such as Describe")
            return prompt
        if spec is None:
            raise InputError(f"unknown task {task!r}")
        wanted = spec.images
        if wanted == "2" and n_images != 2:
            raise InputError(
                f"'{self._label(task)}' compares two images (before, then after); "
                f"{n_images} uploaded. Upload exactly two"
            )
        if wanted == "1" and n_images == 0:
            raise InputError(f"upload an image first: '{self._label(task)}' needs one")
        if task == "region" and region is None:
            raise InputError(
                "mark a region first: open 'Mark a region' and click two opposite corners"
            )
        if spec.needs_argument and task not in ("region", "knowledge") and not prompt:
            raise InputError(f"'{self._label(task)}' needs a prompt: {self._hint(task)}")
        if task == "knowledge" and not prompt:
            raise InputError("type the question to search the knowledge store with")
        return prompt

    def _label(self, task: str | None) -> str:
        return next((c.label for c in all_task_choices() if c.task == task), str(task))

    def _hint(self, task: str | None) -> str:
        return next((c.hint for c in all_task_choices() if c.task == task), "")

    # ---------------------------------------------------------------- asking
    def request(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        task: str | None,
        history: list[dict[str, str]] | None = None,
        region: Sequence[float] | None = None,
        choice: BandChoice | None = None,
        cancel: Any = None,
    ):
        """Check what the user sent and build the :class:`~geoassist.request.AskRequest` for it."""
        from geoassist.request import AskRequest

        prompt = self.check(prompt, task, len(images), region)
        choice = choice or BandChoice()
        return AskRequest.build(
            [str(p) for p in images] or None,
            prompt,
            task=task,
            history=history or None,
            region=list(region) if task == "region" and region is not None else None,
            bands=list(choice.bands) if choice.bands else None,
            sensor=choice.sensor or None,
            composite=choice.composite or None,
            max_new_tokens=self.limits.max_new_tokens,
            stream=True,
            cancel=cancel,
        )

    def stream(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        task: str | None,
        history: list[dict[str, str]] | None = None,
        region: Sequence[float] | None = None,
        choice: BandChoice | None = None,
    ):
        """Check the request, then start answering: an ``AnswerStream`` of text pieces."""
        request = self.request(
            images, prompt, task=task, history=history, region=region, choice=choice
        )
        return self.assistant.answer(request)

    def answer_text(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        task: str | None,
        choice: BandChoice | None = None,
    ) -> Iterator[str]:
        """The answer's text so far, growing piece by piece, within the time limit."""
        stream = self.stream(images, prompt, task=task, choice=choice)
        text = ""
        for piece, timed_out in timed(stream, self.limits.timeout_s):
            if timed_out:
                yield text + timeout_note(self.limits.timeout_s)
                return
            text += piece
            yield text
        yield text


def timed(stream, timeout_s: float) -> Iterator[tuple[str, bool]]:
    """``(piece, False)`` for each piece of ``stream``; ``("", True)`` once, if time runs out.

    Stopping closes the stream, which stops generation.
    """
    start = time.monotonic()
    iterator = iter(stream)
    try:
        for piece in iterator:
            yield piece, False
            if time.monotonic() - start > timeout_s:
                yield "", True
                return
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def timeout_note(timeout_s: float) -> str:
    return f"\n\n*(stopped after {timeout_s:g} s, the time limit for one answer)*"
