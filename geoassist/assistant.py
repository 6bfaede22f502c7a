"""The Python face of GeoAssist: ``Assistant.from_pretrained(...).ask(image, prompt)``."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoassist import formats
from geoassist.chat import IMAGE_SLOT, Message, collate, render, with_image_slots
from geoassist.errors import ContextTooLongError, GeoAssistError, ImageSlotMismatchError
from geoassist.prompts import TASKS, build_prompt

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "geoassist-mini"


@dataclass
class Answer:
    """What the assistant answered, in text and in structure.

    Boxes are ``{"label", "box": [x1, y1, x2, y2], "score"}`` in pixels of the
    input image (the last image of a pair or series). When that image is
    georeferenced, each geometry also carries map coordinates in the image's CRS
    (``box_map``, ``polygon_map``…) and WGS84 lon/lat (``polygon_lonlat``…), and
    ``geo`` describes the georeference; otherwise ``geo`` says that there is none
    (see :mod:`geoassist.geo`). ``coverage`` says how a large scene was read
    (tiles read, whether all of it was; see :mod:`geoassist.large`).
    """

    text: str
    boxes: list[dict[str, Any]] = field(default_factory=list)
    obboxes: list[dict[str, Any]] = field(default_factory=list)
    polygons: list[dict[str, Any]] = field(default_factory=list)
    mask: np.ndarray | None = None
    citations: list[dict[str, Any]] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    raw: str = ""
    task: str | None = None
    image_size: tuple[int, int] | None = None
    geo: dict[str, Any] | None = None
    history: list[dict[str, str]] = field(default_factory=list, repr=False)
    coverage: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "task": self.task,
            "image_size": list(self.image_size) if self.image_size else None,
            "boxes": self.boxes,
            "obboxes": self.obboxes,
            "polygons": self.polygons,
            "mask": mask_to_rle(self.mask) if self.mask is not None else None,
            "citations": self.citations,
            "geo": self.geo,
            "coverage": self.coverage,
            "parse_errors": self.parse_errors,
            "raw": self.raw,
        }

    def to_geojson(self, crs: str = "EPSG:4326") -> dict[str, Any]:
        """The answer's geometry as a GeoJSON FeatureCollection (lon/lat; ``crs="native"``: the image's CRS).

        Raises :class:`geoassist.geo.NotGeoreferencedError` for images without georeferencing.
        """
        from geoassist.geo import answer_to_geojson

        return answer_to_geojson(self, crs=crs)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO-style uncompressed RLE (column-major run lengths, starting with a run of 0s)."""
    flat = np.asarray(mask, dtype=bool).flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    bounds = np.concatenate([[0], changes, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    h, w = rle["size"]
    values = np.zeros(sum(rle["counts"]), dtype=bool)
    pos, on = 0, False
    for n in rle["counts"]:
        values[pos : pos + n] = on
        pos += n
        on = not on
    return values.reshape((h, w), order="F")


class AnswerStream:
    """Iterate to receive the answer's text as it is generated; ``.answer`` holds the result afterwards."""

    def __init__(self, chunks: Iterator[str]):
        self._chunks = chunks
        self.answer: Answer | None = None

    def __iter__(self) -> Iterator[str]:
        yield from self._chunks


@dataclass
class _Prepared:
    rendered: Any
    pixel_values: torch.Tensor | None
    loaded: list
    messages: list[Message]
    task: str | None
    # Retrieved hits placed in the prompt (None: no knowledge store was used).
    passages: list | None = None


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
    # request (the image and the earlier turns are not run again); False turns this off.
    reuse_prefix: bool = True

    def _prefix_cache(self):
        from geoassist.model.vlm import PrefixCache

        if not self.reuse_prefix:
            return None
        return self.__dict__.setdefault("_prefix", PrefixCache())

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
    def _load_images(self, image, images) -> list:
        from geoassist.io import load_image

        items: list = []
        if isinstance(image, (list, tuple)):
            items.extend(image)
        elif image is not None:
            items.append(image)
        items.extend(images or [])
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

    # ------------------------------------------------------------------ ask
    def _prepare(
        self,
        image=None,
        prompt: str = "",
        *,
        images: Sequence | None = None,
        task: str | None = None,
        history: list[dict[str, str]] | None = None,
        region: Sequence[float] | None = None,
        bands: Sequence[str | int] | None = None,
        sensor: str | None = None,
        composite: str | None = None,
        max_new_tokens: int = 256,
    ) -> _Prepared:
        from geoassist.sensors import prepare_for_encoder

        loaded = [
            prepare_for_encoder(im, self.config.preprocess, sensor=sensor, composite=composite)
            for im in self._load_images(image, images)
        ]
        if task is not None and task not in TASKS:
            raise GeoAssistError(f"unknown task {task!r}; tasks: {', '.join(TASKS)}")
        pixel_values = self._pixel_values(loaded, bands)
        image_size = loaded[-1].size if loaded else None
        passages = None
        if self.kb is not None and task in (None, "knowledge"):
            task, passages = "knowledge", self._retrieve(prompt, loaded)
        while True:
            context = None
            if passages is not None:
                from geoassist.rag import context_block

                context, passages = context_block(passages)
            messages = self._conversation(
                prompt, task, history, len(loaded), region, image_size, context
            )
            try:
                rendered = render(
                    messages,
                    self.model.tokenizer,
                    num_image_tokens=self.config.num_image_tokens,
                    num_images=len(loaded),
                    image_token_id=self.model.image_token_id,
                    add_generation_prompt=True,
                    max_length=max(self.config.lm.max_context - max_new_tokens, 1),
                )
            except ContextTooLongError:
                if not passages:
                    raise
                passages = passages[:-1]  # fewer passages rather than no answer
                continue
            return _Prepared(rendered, pixel_values, loaded, messages, task, passages)

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

    def _sampling(self, do_sample: bool, temperature: float, top_p: float, seed: int | None):
        from geoassist.model.vlm import SamplingConfig

        generator = (
            torch.Generator(device=self.device).manual_seed(seed) if seed is not None else None
        )
        return SamplingConfig(do_sample=do_sample, temperature=temperature, top_p=top_p), generator

    def _finish(self, tokens: list[int], prepared: _Prepared) -> Answer:
        model = self.model
        raw = model.tokenizer.decode(
            [t for t in tokens if t != model.end_token_id], skip_special_tokens=True
        )
        answer = self._answer(raw.strip(), prepared.task, prepared.loaded, prepared.messages)
        if prepared.passages is not None:
            from geoassist.rag import citations

            # Only retrieved passages are ever cited; other ids in the text are reported.
            answer.citations, unknown = citations(raw, prepared.passages)
            answer.parse_errors += [
                f"dropped citation [{cid}]: no retrieved passage has this id" for cid in unknown
            ]
        return answer

    def ask(
        self,
        image=None,
        prompt: str = "",
        *,
        images: Sequence | None = None,
        task: str | None = None,
        history: list[dict[str, str]] | None = None,
        region: Sequence[float] | None = None,
        bands: Sequence[str | int] | None = None,
        sensor: str | None = None,
        composite: str | None = None,
        max_new_tokens: int = 256,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
        stream: bool = False,
        max_tiles: int | None = None,
        tiling=None,
    ) -> Answer | AnswerStream:
        """Answer ``prompt`` about ``image`` (a path, PIL image, array or bytes; a list for a pair/series).

        ``task`` picks a documented prompt template (``caption``, ``vqa``, ``classify``,
        ``ground``, ``detect``, ``refer``, ``region``, ``change``, ``segment``…) with
        ``prompt`` as its argument; without it, ``prompt`` is sent as written.
        ``history`` continues a conversation (pass ``answer.history``). With
        ``stream=True`` the result is an :class:`AnswerStream` of text pieces.

        ``sensor`` (a :mod:`geoassist.sensors` preset) and ``composite`` (``true_color``,
        ``false_color``, ``ndvi``…) choose how multispectral bands become the encoder's input.
        An image larger than the encoder's input (a path, URL, band folder or array) is read
        in windows and tiled (:mod:`geoassist.large`): at most ``max_tiles`` tiles
        (default 64; 0 answers from a downscaled overview), more options in ``tiling``
        (a :class:`~geoassist.large.plan.TilingOptions` or dict; ``False`` loads and resizes the
        image as a small one); ``Answer.coverage`` says what was read.
        """
        from geoassist.large.answer import answer_if_large

        large = answer_if_large(
            self, image, images, prompt, task=task, history=history, region=region,
            bands=bands, sensor=sensor, composite=composite, max_new_tokens=max_new_tokens,
            do_sample=do_sample, temperature=temperature, top_p=top_p, seed=seed,
            max_tiles=max_tiles, tiling=tiling,
        )  # fmt: skip
        if large is not None:
            if not stream:
                return large
            result = AnswerStream(iter([large.text]))
            result.answer = large
            return result
        prepared = self._prepare(
            image,
            prompt,
            images=images,
            task=task,
            history=history,
            region=region,
            bands=bands,
            sensor=sensor,
            composite=composite,
            max_new_tokens=max_new_tokens,
        )
        model = self.model
        batch = collate([prepared.rendered], model.pad_token_id)
        sampling, generator = self._sampling(do_sample, temperature, top_p, seed)
        steps = model.generate_steps(
            batch["input_ids"].to(self.device),
            batch["attention_mask"].to(self.device),
            prepared.pixel_values,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            generator=generator,
            prefix_cache=self._prefix_cache(),
        )
        if not stream:
            return self._finish([int(step[0]) for step in steps], prepared)

        result = AnswerStream(iter(()))

        def chunks() -> Iterator[str]:
            tokens: list[int] = []
            shown = ""
            for step in steps:
                token = int(step[0])
                if token == model.end_token_id:
                    break
                tokens.append(token)
                text = model.tokenizer.decode(tokens, skip_special_tokens=True)
                # Hold back a trailing partial UTF-8 sequence until it is complete.
                if text.endswith("\ufffd"):
                    continue
                if len(text) > len(shown):
                    yield text[len(shown) :]
                    shown = text
            steps.close()
            result.answer = self._finish(tokens, prepared)

        result._chunks = chunks()
        return result

    def ask_batch(
        self,
        requests: Sequence[dict[str, Any]],
        *,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        do_sample: bool = False,
        temperature: float = 0.7,
        top_p: float = 0.9,
        seed: int | None = None,
    ) -> list[Answer]:
        """Answer many requests, ``batch_size`` at a time in one left-padded generate call each.

        Each request is a dict of :meth:`ask` arguments: ``image``, ``prompt`` and
        optionally ``images``, ``task``, ``history``, ``region``, ``bands``, ``sensor``,
        ``composite``, ``max_tiles``, ``tiling``. Large scenes are answered one by one
        through their tiles. Answers come back in request order.
        """
        from geoassist.large.answer import answer_if_large

        gen = dict(do_sample=do_sample, temperature=temperature, top_p=top_p, seed=seed)
        large = [
            answer_if_large(
                self, req.get("image"), req.get("images"), req.get("prompt", ""),
                **{k: v for k, v in req.items() if k not in ("image", "images", "prompt")},
                max_new_tokens=max_new_tokens, **gen,
            )  # fmt: skip
            for req in requests
        ]
        if any(a is not None for a in large):
            small = [req for req, a in zip(requests, large, strict=True) if a is None]
            answered = iter(
                self.ask_batch(small, batch_size=batch_size, max_new_tokens=max_new_tokens, **gen)
                if small
                else []
            )
            return [a if a is not None else next(answered) for a in large]
        requests = [
            {k: v for k, v in req.items() if k not in ("max_tiles", "tiling")} for req in requests
        ]
        model = self.model
        sampling, generator = self._sampling(do_sample, temperature, top_p, seed)
        answers: list[Answer] = []
        for start in range(0, len(requests), batch_size):
            prepared = [
                self._prepare(**req, max_new_tokens=max_new_tokens)
                for req in requests[start : start + batch_size]
            ]
            batch = collate([p.rendered for p in prepared], model.pad_token_id)
            pixels = [p.pixel_values for p in prepared if p.pixel_values is not None]
            rows = model.generate(
                batch["input_ids"].to(self.device),
                batch["attention_mask"].to(self.device),
                torch.cat(pixels) if pixels else None,
                max_new_tokens=max_new_tokens,
                sampling=sampling,
                generator=generator,
            )
            answers += [self._finish(row, p) for row, p in zip(rows, prepared, strict=True)]
        return answers

    def _answer(
        self, raw: str, task: str | None, loaded: Sequence, messages: list[Message]
    ) -> Answer:
        history = [{"role": m.role, "content": m.content} for m in messages[1:]]
        history.append({"role": "assistant", "content": raw})
        if not loaded:
            return Answer(text=raw, raw=raw, task=task, history=history)
        image = loaded[-1]
        parsed = formats.parse(raw, image.size)
        answer = Answer(
            text=parsed.text,
            boxes=[
                {"label": b.label, "box": [round(v, 2) for v in b.box], "score": b.score}
                for b in parsed.boxes
            ],
            obboxes=[
                {
                    "label": o.label,
                    "obox": [
                        round(o.cx, 2),
                        round(o.cy, 2),
                        round(o.w, 2),
                        round(o.h, 2),
                        round(o.angle_deg, 2),
                    ],
                    "corners": np.round(o.corners(), 2).tolist(),
                    "score": o.score,
                }
                for o in parsed.obboxes
            ],
            polygons=[
                {"label": p.label, "points": [[round(x, 2), round(y, 2)] for x, y in p.points]}
                for p in parsed.polygons
            ],
            mask=parsed.mask,
            parse_errors=list(parsed.errors),
            raw=raw,
            task=task,
            image_size=image.size,
            history=history,
        )
        from geoassist.geo import Georef, add_map_geometry

        add_map_geometry(answer, Georef.from_image(image))
        return answer
