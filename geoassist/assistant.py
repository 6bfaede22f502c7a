"""The Python face of GeoAssist: ``Assistant.from_pretrained(...).ask(image, prompt)``.

Every face builds one :class:`~geoassist.request.AskRequest` (``ask`` and ``ask_batch``
from their keyword arguments) and hands it to :meth:`Assistant.answer`, which chooses
once: a large scene goes to the planner in :mod:`geoassist.large`, anything else to the
single-image core (:meth:`Assistant.answer_inputs`), which the planner also answers its
tiles through. Nothing calls back into ``ask``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoassist import formats
from geoassist.answer import Answer, AnswerStream, plain_text
from geoassist.chat import (
    IMAGE_SLOT,
    Message,
    collate,
    render,
    shorten_history,
    with_image_slots,
)
from geoassist.errors import ContextTooLongError, GeoAssistError, ImageSlotMismatchError
from geoassist.large.route import answer_scene, large_scene
from geoassist.prompts import build_prompt
from geoassist.request import AskRequest

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "geoassist-mini"

__all__ = ["DEFAULT_MODEL", "Answer", "AnswerStream", "AskRequest", "Assistant"]


@dataclass
class _Prepared:
    rendered: Any
    pixel_values: torch.Tensor | None
    loaded: list
    messages: list[Message]
    task: str | None
    # Retrieved hits placed in the prompt (None: no knowledge store was used).
    passages: list | None = None
    # What unlabelled geometry is called (the class or phrase asked for), and notes for the user.
    label: str | None = None
    notes: list[str] | None = None


class Assistant:
    """Ask a model about images. ``kb`` attaches a knowledge store (a folder, ``"default"`` or a
    :class:`~geoassist.rag.KnowledgeStore`): free questions and the ``knowledge`` task then
    retrieve ``kb_k`` passages, answer from them and fill :attr:`Answer.citations`."""

    def __init__(self, model, device: str | torch.device = "cpu", *, kb=None, kb_k: int = 5):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.kb = None
        self.kb_k = kb_k
        self._kb_image_embedder = None
        if kb is not None:
            from geoassist.rag import open_store

            self.kb = open_store(kb)

    # A follow-up question on the same image reuses the keys and values of the previous
    # request (the image and the earlier turns are not run again, nor the vision tower for the
    # region decoder); False turns this off.
    reuse_prefix: bool = True

    def _prefix_cache(self):
        from geoassist.model.prefix_cache import PrefixCache

        if not self.reuse_prefix:
            return None
        return self.__dict__.setdefault("_prefix", PrefixCache())

    def _tower_output(self, pixel_values: torch.Tensor | None) -> torch.Tensor | None:
        """The tower's output for one request's images, read after its generation so that the
        region decoder does not run the tower again: what the generation computed, or, when a
        prefix-cache hit skipped the tower, what the request that put these images in the cache
        computed. That output is kept with the projected images it became (``visual``) and used
        only while the cache still holds those very ones; None when neither applies (the
        decoder then runs the tower)."""
        from geoassist.model.region_decoder import remembered_tower_output

        if pixel_values is None or self.model.region_decoder is None:
            return None
        features = remembered_tower_output(self.model, pixel_values)
        prefix = self.__dict__.get("_prefix")
        if prefix is None or prefix.pixel_values is not pixel_values or prefix.visual is None:
            return features  # the cache did not serve this request, or serves another one now
        if features is not None:
            self._prefix_tower = (prefix.visual, features)
            return features
        kept = self.__dict__.get("_prefix_tower")
        return kept[1] if kept is not None and kept[0] is prefix.visual else None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_MODEL,
        *,
        device: str | None = None,
        kb=None,
        kb_k: int = 5,
    ) -> Assistant:
        """Load a checkpoint folder, a preset (``tiny``, ``mini``…), a published model or a hub id.

        ``kb`` is a knowledge store to ground answers in (``"default"`` for the bundled one).
        A LoRA adapter is merged into the LM weights in place (the adapter stays attached and
        savable), so answering runs no LoRA matrices.
        """
        from geoassist.checkpoint import create_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = create_model(name_or_path, device=device)
        if model.has_lora:
            model.lm.merge_adapter()
        return cls(model, device=device, kb=kb, kb_k=kb_k)

    @property
    def config(self):
        return self.model.config

    # --------------------------------------------------------------- inputs
    def _load_images(self, items: Sequence) -> list:
        from geoassist.io import load_image

        max_images = self.config.projector.max_images
        if len(items) > max_images:
            raise ImageSlotMismatchError(
                f"{len(items)} images given; this model takes at most {max_images} per conversation"
            )
        return [load_image(item) for item in items]

    def _pixel_values(self, loaded: Sequence, bands) -> torch.Tensor | None:
        from geoassist.preprocess import to_pixel_values

        if not loaded:
            return None
        return torch.stack(
            [to_pixel_values(im, self.config.preprocess, bands) for im in loaded]
        ).to(self.device)

    def _conversation(
        self,
        prompt: str,
        task: str | None,
        history,
        n_images: int,
        region,
        image_size,
        context: str | None = None,
    ) -> list[Message]:
        region_text = None
        if region is not None:
            if image_size is None:
                raise GeoAssistError("a region needs an image")
            region_text = formats.format_box(region, image_size)
        text = build_prompt(task, prompt, region=region_text, context=context)
        messages = [Message("system", self.config.system_prompt)]
        previous = [
            Message(m["role"], m["content"]) for m in (history or []) if m.get("role") != "system"
        ]
        messages += previous
        slots_before = sum(m.content.count(IMAGE_SLOT) for m in previous)
        if slots_before == 0:
            text = with_image_slots(text, n_images)
        messages.append(Message("user", text))
        return messages

    def _prepare(self, request: AskRequest) -> _Prepared:
        from geoassist.preprocess import prepare_for_encoder

        opts = request.image_options
        loaded = [
            prepare_for_encoder(
                im, self.config.preprocess, sensor=opts.sensor, composite=opts.composite
            )
            for im in self._load_images(request.images)
        ]
        task, prompt = request.task, request.prompt
        bands = list(opts.bands) if opts.bands is not None else None
        pixel_values = self._pixel_values(loaded, bands)
        image_size = loaded[-1].size if loaded else None
        passages = None
        if self.kb is not None and task in (None, "knowledge"):
            task, passages = "knowledge", self._retrieve(prompt, loaded)
        history, dropped = request.history, {"passages": 0, "turn": 0}
        while True:
            context = None
            if passages is not None:
                from geoassist.rag import context_block

                context, passages = context_block(passages)
            messages = self._conversation(
                prompt, task, history, len(loaded), request.region, image_size, context
            )
            try:
                rendered = render(
                    messages,
                    self.model.tokenizer,
                    num_image_tokens=self.config.num_image_tokens,
                    num_images=len(loaded),
                    image_token_id=self.model.image_token_id,
                    add_generation_prompt=True,
                    max_length=max(self.config.lm.max_context - request.max_new_tokens, 1),
                )
            except ContextTooLongError:
                # Earlier passages, then the oldest turns, then this turn's last passages go
                # rather than no answer (the images stay).
                shorter = shorten_history(history) if history else None
                if shorter is not None:
                    history, kind = shorter
                    dropped[kind] += 1
                    continue
                if not passages:
                    raise
                passages = passages[:-1]
                continue
            return _Prepared(
                rendered, pixel_values, loaded, messages, task, passages,
                label=_asked_label(task, prompt), notes=_trim_notes(dropped),
            )  # fmt: skip

    def _retrieve(self, prompt: str, loaded: Sequence) -> list:
        """The store's best passages for the question, and for the last image too when the store
        holds image vectors made by this model's own vision tower."""
        from geoassist.rag import VisionTowerEmbedder

        if not prompt.strip():
            raise GeoAssistError("ask a question to search the knowledge store with")
        image, embedder = None, None
        if loaded and "image" in self.kb.specs:
            if self._kb_image_embedder is None:
                self._kb_image_embedder = VisionTowerEmbedder(self.model)
            if self.kb.can_search_images_with(self._kb_image_embedder):
                image, embedder = loaded[-1], self._kb_image_embedder
        return self.kb.search(prompt, image=image, image_embedder=embedder, k=self.kb_k)

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(seed)

    def _finish(
        self,
        tokens: list[int],
        prepared: _Prepared,
        stopped: bool = False,
        seg_states=None,
        vision_features: torch.Tensor | None = None,
    ) -> Answer:
        from geoassist.model.region_answer import apply_regions, region_answer
        from geoassist.tasks import task_of_prompt

        model = self.model
        raw = model.tokenizer.decode(
            [t for t in tokens if t != model.end_token_id], skip_special_tokens=True
        )
        size = prepared.loaded[-1].size if prepared.loaded else None
        # <seg> tokens: the region decoder's geometry written in at each token's place, in the
        # grammar of the task asked (named, or the tag a templated prompt opens with)
        task = prepared.task
        if task is None and prepared.messages:
            task = task_of_prompt(prepared.messages[-1].content)
        regions = region_answer(
            model, tokens, seg_states or [], prepared.pixel_values, size, task,
            vision_features=vision_features,
        )  # fmt: skip
        raw = regions.text if regions is not None else raw
        answer = self._answer(raw.strip(), prepared.task, prepared.loaded, prepared.messages)
        if regions is not None:
            apply_regions(answer, regions)
        answer.stopped = stopped
        answer.notes = list(prepared.notes or [])
        if prepared.label:
            for item in (*answer.boxes, *answer.obboxes, *answer.polygons):
                item.label = item.label or prepared.label
        if prepared.passages is not None:
            from geoassist.rag import citations

            # Only retrieved passages are ever cited; other ids in the text are reported.
            answer.citations, unknown = citations(raw, prepared.passages)
            answer.parse_errors += [
                f"dropped citation [{cid}]: no retrieved passage has this id" for cid in unknown
            ]
        return answer

    # ------------------------------------------------------------------ ask
    def ask(self, image=None, prompt: str = "", **options: Any) -> Answer | AnswerStream:
        """Answer ``prompt`` about ``image`` (a path, PIL image, array or bytes; a list for a pair/series).

        ``options`` are :meth:`AskRequest.build <geoassist.request.AskRequest.build>`'s:
        ``task`` picks a documented prompt template (``caption``, ``vqa``, ``classify``,
        ``ground``, ``detect``, ``refer``, ``region``, ``change``, ``segment``…) with
        ``prompt`` as its argument; without it, ``prompt`` is sent as written.
        ``history`` continues a conversation (pass ``answer.history``); ``region`` is a
        pixel box for the region task. With ``stream=True`` the result is an
        :class:`AnswerStream` of text pieces.

        ``bands``, ``sensor`` (a :mod:`geoassist.sensors` preset) and ``composite``
        (``true_color``, ``false_color``, ``ndvi``…) choose how multispectral bands become
        the encoder's input. ``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``
        and ``seed`` choose how tokens are generated. An image larger than the encoder's
        input (a path, URL, band folder or array) is read in windows and tiled
        (:mod:`geoassist.large`): at most ``max_tiles`` tiles (default 64; 0 answers from a
        downscaled overview), more options in ``tiling`` (a
        :class:`~geoassist.request.TilingOptions` or dict; ``False`` loads and resizes the
        image as a small one); ``Answer.coverage`` says what was read. ``cancel`` (a
        :class:`~geoassist.request.CancelToken`) stops generation and tiling early;
        ``progress(done, total)`` is called as tiles are answered.
        """
        return self.answer(AskRequest.build(image, prompt, **options))

    def ask_batch(
        self, requests: Sequence[dict[str, Any] | AskRequest], *, batch_size: int = 8,
        **options: Any,
    ) -> list[Answer]:  # fmt: skip
        """Answer many requests, ``batch_size`` at a time in one left-padded generate call each.

        Each request is an :class:`~geoassist.request.AskRequest` or a dict of :meth:`ask`
        arguments (``image``, ``prompt`` and optionally ``images``, ``task``, ``history``,
        ``region``, ``bands``, ``sensor``, ``composite``, ``max_tiles``, ``tiling``);
        ``options`` (``max_new_tokens``, ``do_sample``, ``temperature``, ``top_p``,
        ``seed``…) apply to every dict. Large scenes are answered one by one through their
        tiles. Answers come back in request order.
        """
        if batch_size < 1:
            raise GeoAssistError(f"batch_size must be at least 1, got {batch_size}")
        built = [
            r if isinstance(r, AskRequest) else AskRequest.build(**{**options, **r})
            for r in requests
        ]
        if any(r.stream for r in built):
            raise GeoAssistError("ask_batch does not stream; use ask(..., stream=True)")
        scenes = [large_scene(self.config, r) for r in built]
        answers: list[Answer | None] = [
            answer_scene(self, r, scene) if scene is not None else None
            for r, scene in zip(built, scenes, strict=True)
        ]
        small = [i for i, scene in enumerate(scenes) if scene is None]
        if small:
            done = self.answer_inputs([built[i] for i in small], batch_size=batch_size)
            for i, answer in zip(small, done, strict=True):
                answers[i] = answer
        return answers  # type: ignore[return-value]

    def answer(self, request: AskRequest) -> Answer | AnswerStream:
        """Answer one request: a large scene through the planner, anything else through the core."""
        scene = large_scene(self.config, request)
        if scene is not None:
            answer = answer_scene(self, request, scene)
            return AnswerStream.of(answer) if request.stream else answer
        prepared = self._prepare(request)
        model = self.model
        batch = collate([prepared.rendered], model.pad_token_id)
        seg_states: list[list[torch.Tensor]] = [[]]
        steps = model.generate_steps(
            batch["input_ids"].to(self.device),
            batch["attention_mask"].to(self.device),
            prepared.pixel_values,
            max_new_tokens=request.max_new_tokens,
            sampling=request.sampling,
            generator=self._generator(request.seed),
            prefix_cache=self._prefix_cache(),
            seg_states=seg_states,
        )
        if request.stream:
            return self._stream(steps, prepared, request, seg_states[0])
        tokens: list[int] = []
        stopped = False
        try:
            for step in steps:
                tokens.append(int(step[0]))
                if request.cancelled and tokens[-1] != model.end_token_id:
                    stopped = True
                    break
        finally:
            steps.close()
        features = self._tower_output(prepared.pixel_values)
        return self._finish(tokens, prepared, stopped, seg_states[0], features)

    def _stream(
        self, steps, prepared: _Prepared, request: AskRequest, seg_states=None
    ) -> AnswerStream:
        model = self.model
        result = AnswerStream(iter(()))

        def chunks() -> Iterator[str]:
            tokens: list[int] = []
            shown = ""
            stopped = False
            try:
                for step in steps:
                    token = int(step[0])
                    if token == model.end_token_id:
                        break
                    tokens.append(token)
                    text = model.tokenizer.decode(tokens, skip_special_tokens=True)
                    # Hold back a trailing partial UTF-8 sequence until it is complete.
                    if not text.endswith("\ufffd") and len(text) > len(shown):
                        yield text[len(shown) :]
                        shown = text
                    if request.cancelled:
                        stopped = True
                        break
            finally:
                steps.close()
            features = self._tower_output(prepared.pixel_values)
            result.answer = self._finish(tokens, prepared, stopped, seg_states, features)

        result._chunks = chunks()
        return result

    # ------------------------------------------------------------------ core
    def answer_inputs(self, requests: Sequence[AskRequest], *, batch_size: int = 8) -> list[Answer]:
        """The single-image core: answer requests as they are, ``batch_size`` per generate call.

        Images are loaded whole and resized to the encoder's input; nothing is tiled (the
        large-scene planner answers its overview and tiles through here). Requests that share
        generation settings are batched together; a cancelled request stops collecting tokens
        and its answer is marked ``stopped``.
        """
        answers: list[Answer | None] = [None] * len(requests)
        generators: dict[int | None, torch.Generator | None] = {}
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            key = (repr(r.sampling), r.seed, r.max_new_tokens)
            groups.setdefault(key, []).append(i)
        for indices in groups.values():
            first = requests[indices[0]]
            if first.seed not in generators:
                generators[first.seed] = self._generator(first.seed)
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                done = self._generate_batch([requests[i] for i in chunk], generators[first.seed])
                for i, answer in zip(chunk, done, strict=True):
                    answers[i] = answer
        return answers  # type: ignore[return-value]

    @torch.no_grad()
    def sequence_logprobs(
        self, requests: Sequence[AskRequest], answers: Sequence[Answer]
    ) -> list[float]:
        """The log-probability of each answer's text (and its end) given its request, as generated.

        The large-scene planner picks the one best match of a task that expects one thing by it
        when the model gives no instance score.
        """
        model = self.model
        out = []
        for request, answer in zip(requests, answers, strict=True):
            prepared = self._prepare(request)
            prompt = list(prepared.rendered.input_ids)
            tokens = model.tokenizer(answer.raw, add_special_tokens=False).input_ids
            tokens = [*tokens, model.end_token_id]
            ids = torch.tensor([prompt + tokens], device=self.device)
            logits = model(ids, pixel_values=prepared.pixel_values).logits[0, len(prompt) - 1 : -1]
            logp = torch.log_softmax(logits.float(), dim=-1)
            picked = logp.gather(1, torch.tensor(tokens, device=self.device).unsqueeze(1))
            out.append(float(picked.sum()))
        return out

    def _generate_batch(self, requests: Sequence[AskRequest], generator) -> list[Answer]:
        model = self.model
        first = requests[0]
        prepared = [self._prepare(r) for r in requests]
        batch = collate([p.rendered for p in prepared], model.pad_token_id)
        pixels = [p.pixel_values for p in prepared if p.pixel_values is not None]
        # The tower runs once for the batch: its output feeds the projector during generation
        # and, sliced per request, the region decoder afterwards.
        with torch.no_grad():
            features = model.vision(torch.cat(pixels)) if pixels else None
        per_request: list[torch.Tensor | None] = []
        start = 0
        for p in prepared:
            n = 0 if p.pixel_values is None else int(p.pixel_values.shape[0])
            per_request.append(features[start : start + n] if n else None)
            start += n
        rows: list[list[int]] = [[] for _ in requests]
        done = [False] * len(requests)
        stopped = [False] * len(requests)
        seg_states: list[list[torch.Tensor]] = [[] for _ in requests]
        steps = model.generate_steps(
            batch["input_ids"].to(self.device),
            batch["attention_mask"].to(self.device),
            torch.cat(pixels) if pixels else None,
            max_new_tokens=first.max_new_tokens,
            sampling=first.sampling,
            generator=generator,
            seg_states=seg_states,
            vision_features=features,
        )
        try:
            for tokens in steps:
                for i, token in enumerate(tokens.tolist()):
                    if not done[i]:
                        rows[i].append(token)
                        done[i] = token == model.end_token_id
                for i, r in enumerate(requests):
                    if not done[i] and r.cancelled:
                        done[i] = stopped[i] = True
                if all(done):
                    break
        finally:
            steps.close()
        return [
            self._finish(row, p, s, states, own)
            for row, p, s, states, own in zip(
                rows, prepared, stopped, seg_states, per_request, strict=True
            )
        ]

    def _answer(
        self, raw: str, task: str | None, loaded: Sequence, messages: list[Message]
    ) -> Answer:
        from geoassist.geo import Georef

        history = [{"role": m.role, "content": m.content} for m in messages[1:]]
        history.append({"role": "assistant", "content": raw})
        if not loaded:
            return Answer(text=plain_text(raw), raw=raw, task=task, history=history)
        image = loaded[-1]
        parsed = formats.parse(raw, image.size)
        return Answer(
            text=plain_text(parsed.text),
            # Answer types the parsed boxes, oriented boxes, polygons and mask itself.
            boxes=parsed.boxes,
            obboxes=parsed.obboxes,
            polygons=parsed.polygons,
            mask=parsed.mask,
            parse_errors=list(parsed.errors),
            raw=raw,
            task=task,
            image_size=image.size,
            georef=Georef.from_image(image),
            history=history,
        )


def _asked_label(task: str | None, prompt: str) -> str | None:
    """The class or phrase a geometry task asked for, to name geometry the model left unnamed."""
    from geoassist.tasks import GEOMETRY_ANSWER_KINDS, TASKS

    spec = TASKS.get(task) if task else None
    text = " ".join(prompt.split())
    if spec is None or spec.answer_kind not in GEOMETRY_ANSWER_KINDS or not text:
        return None
    return text if len(text) <= 60 else text[:59] + "…"


def _trim_notes(dropped: dict[str, int]) -> list[str]:
    notes = []
    if dropped["passages"]:
        notes.append("passages retrieved for earlier questions were left out to fit the model's context")
    if dropped["turn"]:
        n = dropped["turn"]
        turns = "turn was" if n == 1 else f"{n} turns were"
        notes.append(
            f"the oldest {turns} left out to fit the model's context (the images are kept)"
        )
    return notes
