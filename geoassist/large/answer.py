"""The large-scene planner: answers one large scene through the single-image core.

An image larger than the encoder's input is not shrunk until small objects
vanish. :func:`answer_large` reads it through a
:class:`~geoassist.large.sources.RasterSource`, plans a grid of tiles
(:mod:`geoassist.large.plan`), scores every tile on an overview and reads the best
up to a budget (``max_tiles``, 64 by default), answers the overview and the tiles
in batches through the core (``core.answer_inputs``: encoder-sized inputs, never
the public ``ask``), merges their answers (:mod:`geoassist.large.merge`) and says in
``Answer.coverage`` how much of the scene it read, with a note when it did not read
all of it. How tile answers become one follows the task's merge rule in the task
registry (:func:`geoassist.tasks.merge_rule`: text, count, detections, single, mask,
whole). A task that expects one thing (``single``) gets the one best match across the
tiles: by the instance score where the model gives one, otherwise by the sequence
log-probability of the answer it came from (``core.sequence_logprobs``). A piece
that many tiles answered at the same place of their window does not depend on what
they show and is kept once. Geometry is asked of the overview without the earlier
turns, so a follow-up never repeats the previous turn's boxes. The request's cancel token is checked between batches of tiles (a
cancelled scene is merged from the tiles answered so far, with ``Answer.stopped``),
and its progress callback is called with tiles done / total after each batch.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import shapely
from shapely.geometry import box

from geoassist.answer import Answer, AnswerMask
from geoassist.errors import GeoAssistError
from geoassist.large.merge import (
    _count_target,
    _counts_text,
    _Piece,
    _pieces_to_items,
    _tile_geometry,
    best_single,
    drop_repeats,
    merge_geometries,
    merge_text,
    mosaic_masks,
)
from geoassist.large.plan import (
    Tile,
    TileGrid,
    _detail_map,
    _read_fraction,
    _relevance_side,
    plan_tiles,
    score_tiles,
    select_tiles,
    text_relevance,
    tile_size_px,
)
from geoassist.large.sources import RasterSource
from geoassist.preprocess import EncoderInput
from geoassist.request import AskRequest, ImageOptions, TilingOptions
from geoassist.tasks import merge_rule

logger = logging.getLogger(__name__)

__all__ = ["Core", "answer_large"]

MASK_MAX_SIDE = 8192
SUMMARY_PROMPT = (
    "Below are descriptions of one large satellite image: first of the whole scene seen at low "
    "resolution, then of parts of it seen in detail. Write one short description of the whole "
    "scene.\n\nWhole scene: {overview}\nParts:\n{parts}"
)
SUMMARY_TASKS = ("caption", "change")


class Core(Protocol):
    """The single-image core the planner answers through (an :class:`~geoassist.assistant.Assistant`)."""

    config: Any
    model: Any

    def answer_inputs(self, requests: Sequence[AskRequest], *, batch_size: int) -> list[Answer]:
        """Answers to requests whose images are encoder-sized; never tiles."""
        ...


def answer_large(core: Core, source: RasterSource, request: AskRequest) -> Answer:
    """Answer ``request`` about the large scene read from ``source`` (see the module docstring)."""
    options = request.tiling or TilingOptions()
    config = core.config
    size = config.preprocess.image_size
    tile_px = tile_size_px(config, source.georef, options)
    overlap_px = min(int(round(tile_px * options.overlap)), tile_px - 1)
    grid = plan_tiles(source.width, source.height, tile_px, overlap_px)
    overview = source.overview(max(options.overview_max_side, size))
    opts = request.image_options
    encoder_input = EncoderInput(
        config.preprocess, overview, bands=list(opts.bands) if opts.bands is not None else None,
        sensor=opts.sensor, composite=opts.composite,
    )  # fmt: skip
    # What the core is asked for every input: the question, read from encoder-ready RGB.
    base = request.replace(
        images=[], region=None, history=None, image_options=ImageOptions(), stream=False,
        tiling=None, progress=None,
    )  # fmt: skip
    if request.region is not None:
        return _answer_region(core, source, request, base, encoder_input)
    overview_in = encoder_input(overview)
    ov_scale = (source.width / overview.width, source.height / overview.height)
    rule = merge_rule(request.task)
    if rule == "whole":
        options = dataclasses.replace(options, max_tiles=0)

    # Coarse: score every tile on the overview, pick the ones to read.
    chosen: list[int] = []
    scores = np.zeros(len(grid.tiles))
    valid_fraction = np.ones(len(grid.tiles))
    if options.max_tiles > 0:
        valid = overview.valid_mask()
        rgb = overview_in.array if not encoder_input.multiband else overview.array[:, :, :3]
        relevance = None
        if (
            options.max_tiles < len(grid.tiles)
            and request.prompt.strip()
            and options.relevance_weight > 0
        ):
            relevance = text_relevance(
                core.model, overview_in, request.prompt, _relevance_side(config)
            )
        # Detail on cells of about an eighth of a tile: structure, not pixel noise.
        block = max(1, int(tile_px / max(ov_scale) / 8))
        scores, valid_fraction = score_tiles(
            grid, valid, _detail_map(rgb, block), relevance, options.relevance_weight
        )
        chosen = select_tiles(scores, valid_fraction, options.max_tiles)
    with_data = int((valid_fraction >= 0.01).sum())

    # Fine: the overview and the chosen tiles, in batches. "How many X" questions are answered
    # by detecting X in every tile and counting the merged detections: exact, and located.
    count_target = None
    if rule in ("count", "text"):
        count_target = _count_target(request.prompt)
    if count_target:
        base = base.replace(task="detect", prompt=count_target)
    # Geometry is found afresh in every turn: the earlier turns are context for text only.
    geometry_rule = rule in ("detections", "single", "mask") or bool(count_target)
    overview_request = base.replace(
        images=[overview_in], history=None if geometry_rule else request.history
    )
    overview_answer = core.answer_inputs([overview_request], batch_size=1)[0]
    tile_answers, tile_sizes, tile_requests = _answer_tiles(
        core, source, grid, chosen, base, options, encoder_input, size, request.progress
    )
    stopped = len(tile_answers) < len(chosen) or overview_answer.stopped
    stopped = stopped or any(a.stopped for a in tile_answers.values())
    chosen = [i for i in chosen if i in tile_answers]

    # Merge.
    read_area = (
        shapely.unary_union([box(*grid.tiles[i].bounds) for i in chosen]) if chosen else None
    )
    pieces: list[_Piece] = []
    for index, answer in tile_answers.items():
        pieces += _tile_geometry(answer, grid.tiles[index], grid, tile_sizes[index])
    rank = {i: r for r, i in enumerate(sorted(tile_answers, key=lambda i: (-scores[i], i)))}
    pieces, repeated = drop_repeats(pieces, grid, len(tile_answers), rank)
    whole = (0, 0, source.width, source.height)
    overview_tile = Tile(-1, 0, 0, whole, whole)
    for piece in _tile_geometry(overview_answer, overview_tile, grid, overview_in.size):
        if read_area is None or not read_area.contains(piece.shape.centroid):
            piece.tile, piece.cut = None, False
            pieces.append(piece)
    merged = merge_geometries(pieces)
    if rule == "single" and len(merged) > 1:
        logprob = None
        if all(p.score is None for p in merged):
            requests = {None: overview_request, **tile_requests}
            answers = {None: overview_answer, **tile_answers}
            logprob = _logprobs(core, {p.tile for p in merged}, requests, answers)
        merged = best_single(merged, logprob)
    boxes, oboxes, polygons = _pieces_to_items(merged)
    masks = _mosaic(source, grid, tile_answers, overview_answer)

    counts: dict[str, int] = {}
    counted_from: dict[str, int] | None = None
    tile_texts = {i: a.text for i, a in tile_answers.items()}
    if count_target is not None:
        _, counts = _counts_text(boxes, oboxes, polygons)
        text, how = str(len(boxes) + len(oboxes) + len(polygons)), "count_of_merged_detections"
        from_overview = sum(p.tile is None for p in merged)
        counted_from = {"tiles": len(merged) - from_overview, "overview": from_overview}
    elif rule in ("detections", "single", "count"):
        text, counts = _counts_text(boxes, oboxes, polygons)
        how = "geometry_merged"
    elif request.task in SUMMARY_TASKS and options.summarise and tile_texts:
        text = _summarise(core, base, overview_answer.text, tile_texts)
        how = "summary_of_overview_and_tiles"
    else:
        text, how = merge_text(request.task, request.prompt, overview_answer.text, tile_texts, grid)

    if rule == "whole":
        how = "overview_only"
    coverage = _coverage(
        grid, chosen, with_data, valid_fraction, scores, tile_answers, overview_answer,
        overview, ov_scale, size, how, text, counts, counted_from, stopped,
    )  # fmt: skip
    answers = (overview_answer, *tile_answers.values())
    notes = list(overview_answer.notes)
    if repeated:
        notes.append(
            f"{repeated + 1} tiles gave the same answer at the same place of each tile, which "
            "does not depend on what they show; it is kept once"
        )
    return Answer(
        text=text,
        boxes=boxes,
        obboxes=oboxes,
        polygons=polygons,
        masks=masks,
        parse_errors=sorted({e for a in answers for e in a.parse_errors}),
        raw=overview_answer.raw,
        task=request.task,
        image_size=(source.width, source.height),
        georef=source.georef,
        history=_history(request.history, request.task, request.prompt, text),
        coverage=coverage,
        stopped=stopped,
        notes=notes,
    )


def _logprobs(
    core: Core, keys: set, requests: dict[Any, AskRequest], answers: dict[Any, Answer]
) -> dict[Any, float] | None:
    """The sequence log-probability of the answers of ``keys`` (tile indices, None: the overview)."""
    score = getattr(core, "sequence_logprobs", None)
    if score is None:
        return None
    keys = [k for k in keys if k in requests]
    values = score([requests[k] for k in keys], [answers[k] for k in keys])
    return dict(zip(keys, values, strict=True))


def _answer_tiles(
    core: Core,
    source: RasterSource,
    grid: TileGrid,
    chosen: list[int],
    base: AskRequest,
    options: TilingOptions,
    encoder_input: EncoderInput,
    size: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[dict[int, Answer], dict[int, tuple[int, int]], dict[int, AskRequest]]:
    """The chosen tiles read at the encoder's input size and answered in batches, until cancelled."""
    tile_px = grid.tile_px
    answers: dict[int, Answer] = {}
    sizes: dict[int, tuple[int, int]] = {}
    asked: dict[int, AskRequest] = {}
    for start in range(0, len(chosen), options.batch_size):
        if base.cancelled:
            logger.info("tiles: cancelled after %d/%d", len(answers), len(chosen))
            break
        batch = chosen[start : start + options.batch_size]
        requests = []
        for index in batch:
            col, row, w, h = grid.tiles[index].window
            out = (
                (w, h)
                if tile_px == size
                else (max(1, round(w * size / tile_px)), max(1, round(h * size / tile_px)))
            )
            tile_image = encoder_input(source.read((col, row, w, h), out))
            sizes[index] = tile_image.size
            requests.append(base.replace(images=[tile_image]))
            asked[index] = requests[-1]
        got = core.answer_inputs(requests, batch_size=options.batch_size)
        answers.update(zip(batch, got, strict=True))
        done = min(start + options.batch_size, len(chosen))
        if progress is not None:
            progress(done, len(chosen))
        logger.info("tiles: %d/%d answered", done, len(chosen))
    return answers, sizes, asked


def _mosaic(
    source: RasterSource, grid: TileGrid, tile_answers: dict[int, Answer], overview: Answer
) -> list[AnswerMask]:
    """The tiles' masks written core by core over the overview's, at most MASK_MAX_SIDE a side."""
    tile_masks = {i: a.mask for i, a in tile_answers.items() if a.mask is not None}
    if not tile_masks and overview.mask is None:
        return []
    scale = max(1.0, max(source.width, source.height) / MASK_MAX_SIDE)
    out_shape = (max(1, round(source.height / scale)), max(1, round(source.width / scale)))
    mask = mosaic_masks(grid, tile_masks, out_shape, overview.mask)
    cell = (source.width / out_shape[1], source.height / out_shape[0])
    return [AnswerMask(mask, scale=cell)]


def _coverage(
    grid: TileGrid, chosen: list[int], with_data: int, valid_fraction: np.ndarray,
    scores: np.ndarray, tile_answers: dict[int, Answer], overview_answer: Answer, overview: Any,
    ov_scale: tuple[float, float], size: int, how: str, text: str, counts: dict[str, int],
    counted_from: dict[str, int] | None, stopped: bool,
) -> dict[str, Any]:  # fmt: skip
    """What was read, how it was merged, and a note whenever the scene was not read whole."""
    complete = len(chosen) >= with_data
    read_fraction = _read_fraction(grid, chosen, valid_fraction)
    coverage: dict[str, Any] = {
        "mode": "tiled" if chosen else "overview",
        "complete": bool(complete and chosen),
        "tiles_read": len(chosen),
        "tiles_total": len(grid.tiles),
        "tiles_with_data": with_data,
        "fraction_read": round(read_fraction, 4),
        "tile_px": grid.tile_px,
        "overlap_px": grid.overlap_px,
        "tile_input_px": size,
        "overview_size": list(overview.size),
        "overview_scale": [round(ov_scale[0], 4), round(ov_scale[1], 4)],
        "merge": how,
        "tiles": [
            {
                "index": i,
                "window": list(grid.tiles[i].window),
                "score": round(float(scores[i]), 4),
                "raw": tile_answers[i].raw,
            }
            for i in chosen
        ],
        "overview_raw": overview_answer.raw,
    }
    if counts:
        coverage["counts"] = counts
    if counted_from is not None:
        coverage["counted_from"] = counted_from
    if coverage["complete"]:
        return coverage
    width, height = grid.width, grid.height
    if chosen:
        coverage["note"] = (
            f"read {len(chosen)} of {with_data} tiles with data ({read_fraction:.1%} of the scene) "
            f"at full resolution; the rest was seen only in a {overview.width}×{overview.height} "
            "overview — raise max_tiles (--max-tiles) to read more"
        )
        if counted_from is not None:
            coverage["note"] += (
                f"; the count ({text}) is {counted_from['tiles']} objects found in the tiles read "
                f"plus {counted_from['overview']} seen in the overview elsewhere, where small "
                "objects are likely missed: take it as a lower bound"
            )
    elif how == "overview_only":
        coverage["note"] = (
            f"answered from a {overview.width}×{overview.height} overview of the "
            f"{width}×{height} scene: this task looks at the scene as a whole"
        )
    else:
        coverage["note"] = (
            f"answered from a {overview.width}×{overview.height} overview of the "
            f"{width}×{height} scene; small objects may be missed — "
            "allow tiles (max_tiles > 0) to read it at full resolution"
        )
    if stopped:
        coverage["note"] = "stopped on request; " + coverage["note"]
    return coverage


def _history(
    history: list[dict[str, str]] | None, task: str | None, prompt: str, text: str
) -> list[dict[str, str]]:
    """The conversation as the user had it: their question about the scene, and the merged answer."""
    from geoassist.chat import IMAGE_SLOT, with_image_slots
    from geoassist.prompts import build_prompt

    previous = [dict(m) for m in (history or []) if m.get("role") != "system"]
    user = build_prompt(task, prompt) if task != "knowledge" else prompt
    if not any(IMAGE_SLOT in m.get("content", "") for m in previous):
        user = with_image_slots(user, 1)
    return [*previous, {"role": "user", "content": user}, {"role": "assistant", "content": text}]


def _summarise(core: Core, base: AskRequest, overview_text: str, tile_texts: dict[int, str]) -> str:
    """One caption for the scene, written by the LM from the overview's and the tiles' captions."""
    parts = []
    for text in tile_texts.values():
        text = text.strip()
        if text and text not in parts:
            parts.append(text)
    parts = parts[:16]
    prompt = SUMMARY_PROMPT.format(
        overview=overview_text.strip() or "(none)", parts="\n".join(f"- {p}" for p in parts)
    )
    try:
        summary = base.replace(images=[], prompt=prompt, task=None)
        return core.answer_inputs([summary], batch_size=1)[0].text
    except GeoAssistError as exc:  # e.g. the context is too short for the parts
        logger.info("summary skipped: %s", exc)
        return overview_text


def _answer_region(
    core: Core,
    source: RasterSource,
    request: AskRequest,
    base: AskRequest,
    encoder_input: EncoderInput,
) -> Answer:
    """The region task on a large scene: one window around the region, read at full resolution."""
    size = core.config.preprocess.image_size
    x1, y1, x2, y2 = request.region  # type: ignore[misc]
    side = int(max(x2 - x1, y2 - y1) * 2)
    side = min(max(side, size), max(source.width, source.height))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = min(side, source.width), min(side, source.height)
    col = int(min(max(cx - w / 2, 0), source.width - w))
    row = int(min(max(cy - h / 2, 0), source.height - h))
    scale = max(w, h) / size if max(w, h) > 2 * size else 1.0
    out = (max(1, round(w / scale)), max(1, round(h / scale)))
    crop = encoder_input(source.read((col, row, w, h), out))
    local = ((x1 - col) / scale, (y1 - row) / scale, (x2 - col) / scale, (y2 - row) / scale)
    ask = base.replace(images=[crop], history=request.history, region=local)
    answer = core.answer_inputs([ask], batch_size=1)[0]
    answer = answer.rescaled(
        scale, scale, (col, row), image_size=(source.width, source.height), georef=source.georef
    )
    answer.obboxes, answer.masks = [], []
    answer.coverage = {
        "mode": "region_window",
        "complete": True,
        "window": [col, row, w, h],
        "note": None,
    }
    return answer
