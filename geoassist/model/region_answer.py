"""An answer with ``<seg>`` tokens: the decoder's geometry written in at each token's place.

After generation the tokens are split at every ``<seg>``; each token's hidden state goes
through the region decoder, and its place in the text gets the geometry in the answer grammar
(docs/FORMATS.md) that the task asks for — boxes with their scores (``detect``, ``ground``; one
box for ``refer``), oriented boxes (``detect_obb``), polygons, or a ``<mask>`` (``segment``,
``change_seg``). The digits are never fed back into the LM: the conversation's history keeps
the turn as it was generated, token and all. The typed geometry of the :class:`Answer`
(boxes with real scores, oriented boxes, polygons, masks) comes from the decoder itself, at
full precision, labelled by the ``<ref>`` before each token.

Model output is not trusted: a ``<seg>`` with no image, or past ``max_seg_tokens``, is dropped
and reported in ``Answer.parse_errors`` (the parser's ``dropped …`` wording), never raised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from geoassist.answer import Answer, AnswerBox, AnswerMask, AnswerOBox, AnswerPolygon
from geoassist.format_grammar import format_box, format_obox, format_polygon
from geoassist.format_masks import format_mask
from geoassist.model.region_decoder import SEG_TOKEN, decode_regions
from geoassist.model.region_geometry import RegionResult, decode_query

_REF = re.compile(r"<ref>([^<>]*)</ref>", re.IGNORECASE)
SINGLE_INSTANCE_TASKS = ("refer",)
"""Tasks whose answer is the one instance an expression names: the best-scored one is kept."""


@dataclass
class RegionAnswer:
    history_text: str  # as generated, each <seg> in its place
    text: str  # each <seg> replaced by its geometry in the answer grammar
    regions: list[tuple[str | None, RegionResult]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _label_before(text: str) -> str | None:
    refs = _REF.findall(text)
    label = " ".join(refs[-1].split()) if refs else ""
    return label or None


def _answer_kind(task: str | None) -> str:
    if task is None:
        return "boxes"
    from geoassist.tasks import get_task

    return get_task(task).answer_kind


def geometry_text(result: RegionResult, kind: str, image_size: tuple[int, int], grid: int) -> str:
    """``result`` in the grammar of a task whose answer kind is ``kind`` ("" when it found nothing)."""
    if kind == "mask":
        if result.mask is None or not result.mask.any():
            return ""
        return format_mask(result.mask, grid=(grid, grid))
    pieces = []
    for inst in result.instances:
        score = min(max(inst.score, 0.0), 1.0)
        if kind == "oboxes":
            pieces.append(format_obox(inst.cx, inst.cy, inst.w, inst.h, inst.angle_deg, image_size, score))
        elif kind == "polygons":
            pieces.append(format_polygon(inst.corners(), image_size))
        else:
            pieces.append(format_box(inst.box, image_size, score))
    return "".join(pieces)


@torch.no_grad()
def region_answer(
    model,
    tokens: Sequence[int],
    seg_states: Sequence[torch.Tensor],
    pixel_values: torch.Tensor | None,
    image_size: tuple[int, int] | None,
    task: str | None,
    *,
    vision_features: torch.Tensor | None = None,
) -> RegionAnswer | None:
    """The answer text of generated ``tokens`` with each ``<seg>`` decoded; None when the model
    has no decoder or wrote no ``<seg>``. ``seg_states`` are the hidden states at the tokens, in
    order; ``image_size`` (width, height) is that of the image the answer is about (the last);
    ``vision_features``, the tower's output for ``pixel_values`` from the generation (or from the
    request whose prefix cache the generation reused), keeps the tower from running again."""
    seg = model.seg_token_id
    tokens = [t for t in tokens if t != model.end_token_id]
    if seg is None or seg not in tokens:
        return None
    config = model.config.region_decoder
    pieces: list[list[int]] = [[]]
    for t in tokens:
        if t == seg:
            pieces.append([])
        else:
            pieces[-1].append(t)
    texts = [model.tokenizer.decode(p, skip_special_tokens=True) for p in pieces]
    n_tokens = len(texts) - 1
    usable = min(n_tokens, len(seg_states), config.max_seg_tokens)
    errors: list[str] = []
    results: list[RegionResult | None] = [None] * n_tokens
    if pixel_values is None or image_size is None:
        errors += [
            f"dropped {SEG_TOKEN} #{k + 1}: no image to decode a region from" for k in range(n_tokens)
        ]
        usable = 0
    else:
        if n_tokens > config.max_seg_tokens:
            errors += [
                f"dropped {SEG_TOKEN} #{k + 1}: more than region_decoder.max_seg_tokens "
                f"({config.max_seg_tokens}) in one answer"
                for k in range(config.max_seg_tokens, n_tokens)
            ]
        errors += [
            f"dropped {SEG_TOKEN} #{k + 1}: generation stopped before the token was run"
            for k in range(usable, min(n_tokens, config.max_seg_tokens))
        ]
        if usable:
            hidden = torch.stack([s.float() for s in seg_states[:usable]])
            maps = decode_regions(model, pixel_values, hidden, vision_features=vision_features)
            for k in range(usable):
                results[k] = decode_query(
                    maps, k,
                    input_size=model.config.preprocess.image_size,
                    image_size=tuple(image_size),
                    score_threshold=config.score_threshold,
                    mask_threshold=config.mask_threshold,
                    max_instances=config.max_instances,
                )  # fmt: skip
    kind = _answer_kind(task)
    text, regions = texts[0], []
    for k, result in enumerate(results):
        if result is not None:
            if task in SINGLE_INSTANCE_TASKS:
                result.instances = result.instances[:1]
            label = _label_before(text)
            regions.append((label, result))
            text += geometry_text(result, kind, tuple(image_size), config.mask_grid)
        text += texts[k + 1]
    return RegionAnswer(SEG_TOKEN.join(texts).strip(), text.strip(), regions, errors)


def apply_regions(answer: Answer, regions: RegionAnswer) -> Answer:
    """Fill ``answer`` (parsed from ``regions.text``) with the decoder's own geometry, and keep
    the generated turn, ``<seg>`` tokens included, in its history."""
    if answer.history and answer.history[-1].get("role") == "assistant":
        answer.history[-1] = {**answer.history[-1], "content": regions.history_text}
    answer.parse_errors = list(answer.parse_errors) + regions.errors
    if answer.image_size is None:
        return answer
    boxes, oboxes, polygons, masks = [], [], [], []
    for label, result in regions.regions:
        for inst in result.instances:
            score = round(min(max(inst.score, 0.0), 1.0), 4)
            boxes.append(AnswerBox(label, inst.box, score))
            oboxes.append(AnswerOBox(label, inst.cx, inst.cy, inst.w, inst.h, inst.angle_deg, score))
            polygons.append(AnswerPolygon(label, [tuple(p) for p in inst.corners().tolist()]))
        if result.mask is not None and result.mask.any():
            masks.append(AnswerMask(result.mask, label=label))
    answer.boxes, answer.obboxes, answer.polygons, answer.masks = boxes, oboxes, polygons, masks
    return answer
