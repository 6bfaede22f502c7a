"""The app's side of a request: limits, checks with messages a user can act on, and the call.

:class:`Engine` wraps one loaded :class:`~geoassist.assistant.Assistant` for every
session of the app. It knows nothing about Gradio, so the UI, the ``ask`` API
endpoint and the tests share one path from a request to a streamed answer.
"""

from __future__ import annotations

import inspect
import logging
import re
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


AUTO_TASK = "auto"  # the task follows the prompt and the inputs (see infer_task)
AUTO_LABEL = "Auto"


def all_task_choices() -> tuple[TaskChoice, ...]:
    """Auto, the free chat, then every task of the registry (:mod:`geoassist.tasks`) with a label."""
    from geoassist.tasks import TASKS

    auto = TaskChoice(
        AUTO_LABEL, AUTO_TASK, "Ask a question, name what to find, or press Send to describe…"
    )
    chat = TaskChoice("Chat", None, "Ask anything about the image…")
    return (auto, chat, *(TaskChoice(t.label, t.name, t.hint) for t in TASKS.values() if t.label))


_QUESTION = re.compile(
    r"^\s*(?:how|what|which|where|when|who|why|is|are|was|were|does|do|did|can|could|has|have|"
    r"should|will|would)\b|\?\s*$",
    re.IGNORECASE,
)
_DESCRIBE = re.compile(r"^\s*(?:describe|caption|summari[sz]e)\b", re.IGNORECASE)
_CHANGE = re.compile(r"\b(?:what|anything)\s+(?:has\s+)?changed\b|\bdifferences?\b", re.IGNORECASE)
_FIND = re.compile(
    r"^\s*(?:find|detect|locate|show(?:\s+me)?|mark|where\s+are)\s+(?:all\s+)?(?:the\s+)?(.+?)"
    r"[?.!]?\s*$",
    re.IGNORECASE,
)


def infer_task(prompt: str, n_images: int, *, has_kb: bool = False) -> tuple[str | None, str]:
    """The task an Auto request means, from its prompt and how many images it has; and the prompt.

    Two images: "what changed" (or nothing typed) compares them, any other text is a
    question about the change. One image: nothing typed or "describe…" captions it, a
    question is answered (vqa), "find X" / "show me X" detects X. Anything else, and any
    request without images, is sent as written (with a knowledge store, questions go to it).
    """
    text = (prompt or "").strip()
    if n_images >= 2:
        if not text or _CHANGE.search(text):
            return "change", ""
        return "change_qa", text
    if n_images == 1:
        if not text or (_DESCRIBE.match(text) and not _QUESTION.search(text)):
            return "caption", ""
        find = _FIND.match(text)
        if find and not text.endswith("?"):
            return "detect", find.group(1)
        if _QUESTION.search(text) and not has_kb:
            return "vqa", text
    return None, text


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

    def resolve(self, task: str | None, prompt: str, n_images: int) -> tuple[str | None, str]:
        """The task and prompt to ask with: Auto becomes :func:`infer_task`'s choice."""
        if task != AUTO_TASK:
            return task, prompt
        return infer_task(prompt, n_images, has_kb=self.has_kb)

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
        progress: Any = None,
    ):
        """Check what the user sent and build the :class:`~geoassist.request.AskRequest` for it.

        ``task`` may be :data:`AUTO_TASK`; ``cancel`` (a :class:`~geoassist.request.CancelToken`)
        stops generation between tokens and tiles; ``progress(done, total)`` hears of tiles.
        """
        from geoassist.request import AskRequest

        task, prompt = self.resolve(task, prompt, len(images))
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
            progress=progress,
        )

    def stream(self, images: Sequence[Path], prompt: str, **options: Any):
        """Check the request, then start answering: an ``AnswerStream`` of text pieces.

        ``options`` are :meth:`request`'s (``task`` is required).
        """
        return self.assistant.answer(self.request(images, prompt, **options))

    def answer_text(
        self,
        images: Sequence[Path],
        prompt: str,
        *,
        task: str | None,
        choice: BandChoice | None = None,
    ) -> Iterator[str]:
        """The answer's text so far, growing piece by piece, within the time limit."""
        from geoassist.request import CancelToken

        cancel = CancelToken()
        stream = self.stream(images, prompt, task=task, choice=choice, cancel=cancel)
        text = ""
        for piece, timed_out in timed(stream, self.limits.timeout_s, cancel):
            if timed_out:
                yield text + timeout_note(self.limits.timeout_s)
                return
            text += piece
            yield text
        yield text


def timed(stream, timeout_s: float, cancel: Any = None) -> Iterator[tuple[str, bool]]:
    """``(piece, False)`` for each piece of ``stream``; ``("", True)`` once, if time runs out.

    Running out of time cancels the request's ``cancel`` token (generation ends at the next
    token or tile) and closes the stream.
    """
    start = time.monotonic()
    iterator = iter(stream)
    try:
        for piece in iterator:
            yield piece, False
            if time.monotonic() - start > timeout_s:
                if cancel is not None:
                    cancel.cancel()
                yield "", True
                return
    finally:
        if cancel is not None and time.monotonic() - start > timeout_s:
            cancel.cancel()
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def timeout_note(timeout_s: float) -> str:
    return f"\n\n*(stopped after {timeout_s:g} s, the time limit for one answer)*"
