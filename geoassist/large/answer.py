"""Answering about a large scene: the planner above the single-image core.

An image larger than the encoder's input is not shrunk until small objects
vanish. :func:`answer_large` reads it through a :class:`~geoassist.large.sources.RasterSource`,
plans a grid of tiles (:mod:`geoassist.large.plan`), scores every tile on an
overview and reads the best up to a budget (``max_tiles``, 64 by default),
answers the overview and the tiles in batches, merges their answers
(:mod:`geoassist.large.merge`) and says in ``Answer.coverage`` how much of the
scene it read, with a note when it did not read all of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box

from geoassist.errors import GeoAssistError
from geoassist.geo import Georef, add_map_geometry
from geoassist.large.merge import (
    _count_target,
    _counts_text,
    _Piece,
    _pieces_to_items,
    _tile_geometry,
    merge_geometries,
    merge_text,
    mosaic_masks,
)
from geoassist.large.plan import (
    Tile,
    TilingOptions,
    _as_options,
    _detail_map,
    _read_fraction,
    _relevance_side,
    needs_tiling,
    plan_tiles,
    score_tiles,
    select_tiles,
    text_relevance,
    tile_size_px,
)
from geoassist.large.sources import RasterSource, _EncoderInput, _is_gdal_name

logger = logging.getLogger(__name__)

__all__ = ["answer_large", "answer_if_large"]

MASK_MAX_SIDE = 8192

GEOMETRY_TASKS = ("detect", "detect_obb", "ground", "refer", "segment")
SUMMARY_TASKS = ("caption", "change")
SUMMARY_PROMPT = (
    "Below are descriptions of one large satellite image: first of the whole scene seen at low "
    "resolution, then of parts of it seen in detail. Write one short description of the whole "
    "scene.\n\nWhole scene: {overview}\nParts:\n{parts}"
)


def _is_large_candidate(item: Any) -> bool:
    from geoassist.io import Image

    if isinstance(item, (Image, np.ndarray)):
        return True
    if isinstance(item, (str, Path)):
        text = str(item)
        if isinstance(item, str) and _is_gdal_name(text):
            return True
        return Path(text).expanduser().is_dir() or Path(text).expanduser().is_file()
    return False


def _size_of(item: Any) -> tuple[int, int] | None:
    from geoassist.io import Image, read_header

    if isinstance(item, Image):
        return item.size
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[0] <= 16 < item.shape[2]:
            return item.shape[2], item.shape[1]
        return (item.shape[1], item.shape[0]) if item.ndim >= 2 else None
    text = str(item)
    if (isinstance(item, str) and _is_gdal_name(text)) or Path(text).expanduser().is_dir():
        return None  # always goes through a RasterSource
    try:
        return read_header(item).size
    except GeoAssistError:
        return (0, 0)  # not large: the normal path reports the problem with its own message


def answer_if_large(assistant: Any, image: Any, images: Any, prompt: str, **kwargs: Any) -> Any:
    """Answer through :func:`answer_large` when the request holds a large scene; None otherwise.

    URLs and band-product folders always go through a :class:`RasterSource`
    (small ones are read whole and answered the normal way).
    """
    tiling = kwargs.pop("tiling", None)
    max_tiles = kwargs.pop("max_tiles", None)
    if tiling is False:
        return None
    items = (
        list(image) if isinstance(image, (list, tuple)) else ([image] if image is not None else [])
    )
    items += list(images or [])
    if not items or not all(_is_large_candidate(i) for i in items):
        return None
    options = _as_options(tiling, max_tiles)
    sizes = [_size_of(i) for i in items]
    tile_px = tile_size_px(assistant.config, None, options)
    if all(s is not None and not needs_tiling(*s, tile_px, options) for s in sizes):
        return None
    if len(items) == 1:
        with RasterSource.open(items[0]) as source:
            tile_px = tile_size_px(assistant.config, source.georef, options)
            if not needs_tiling(source.width, source.height, tile_px, options):
                whole = source.read()
                return assistant.ask(whole, prompt, tiling=False, **kwargs)
            return answer_large(assistant, source, prompt, options=options, **kwargs)
    # A pair or series with a large image: every image is answered from its overview.
    overviews = []
    side = max(options.min_side_px, 2 * tile_px)  # small enough not to be tiled again
    for item in items:
        with RasterSource.open(item) as source:
            overviews.append((source.overview(side), source.size, source.georef))
    answer = assistant.ask([o for o, _, _ in overviews], prompt, tiling=False, **kwargs)
    last_overview, last_size, last_georef = overviews[-1]
    _rescale(answer, last_overview.size, last_size, last_georef)
    answer.coverage = {
        "mode": "overview",
        "complete": False,
        "note": "large images in a pair or series are answered from downscaled overviews",
    }
    return answer


def _rescale(
    answer: Any, from_size: tuple[int, int], to_size: tuple[int, int], georef: Georef | None
) -> None:
    """Move an answer's geometry from an overview's pixels to the full scene's."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    for item in answer.boxes:
        x1, y1, x2, y2 = item["box"]
        item["box"] = [round(x1 * sx, 2), round(y1 * sy, 2), round(x2 * sx, 2), round(y2 * sy, 2)]
    for item in answer.obboxes:
        corners = np.asarray(item["corners"], dtype=float) * [sx, sy]
        item["corners"] = np.round(corners, 2).tolist()
        cx, cy, w, h, a = item["obox"]
        if abs(sx - sy) < 1e-9:
            item["obox"] = [
                round(cx * sx, 2),
                round(cy * sy, 2),
                round(w * sx, 2),
                round(h * sy, 2),
                a,
            ]
    for item in answer.polygons:
        item["points"] = [[round(x * sx, 2), round(y * sy, 2)] for x, y in item["points"]]
    answer.image_size = tuple(to_size)
    if answer.mask is not None and georef is not None:
        answer.geo = {"mask_transform": list(georef.scaled(sx, sy).transform)[:6]}
    for item in (*answer.boxes, *answer.obboxes, *answer.polygons):
        for key in ("box_map", "polygon_map", "polygon_lonlat", "bbox_lonlat", "corners_map",
                    "corners_lonlat", "points_map", "points_lonlat"):  # fmt: skip
            item.pop(key, None)
    add_map_geometry(answer, georef)


def answer_large(
    assistant: Any,
    source: RasterSource,
    prompt: str = "",
    *,
    options: TilingOptions | None = None,
    task: str | None = None,
    history: list[dict[str, str]] | None = None,
    region: Sequence[float] | None = None,
    bands: Sequence[str | int] | None = None,
    sensor: str | None = None,
    composite: str | None = None,
    max_new_tokens: int = 256,
    progress: Callable[[int, int], None] | None = None,
    **sampling: Any,
) -> Any:
    """Answer ``prompt`` about a large scene read from ``source`` (see the module docstring).

    ``sampling`` holds :meth:`Assistant.ask_batch`'s sampling arguments
    (``do_sample``, ``temperature``, ``top_p``, ``seed``). ``progress(done, total)``
    is called after each batch of tiles.
    """
    from geoassist.assistant import Answer

    options = options or TilingOptions()
    config = assistant.config
    size = config.preprocess.image_size
    tile_px = tile_size_px(config, source.georef, options)
    overlap_px = min(int(round(tile_px * options.overlap)), tile_px - 1)
    grid = plan_tiles(source.width, source.height, tile_px, overlap_px)
    overview = source.overview(max(options.overview_max_side, size))
    encoder_input = _EncoderInput(
        config.preprocess, overview, bands=bands, sensor=sensor, composite=composite
    )
    overview_in = encoder_input(overview)
    ov_scale = (source.width / overview.width, source.height / overview.height)

    if region is not None:
        return _answer_region(assistant, source, prompt, region, encoder_input, task=task,
                              history=history, max_new_tokens=max_new_tokens, **sampling)  # fmt: skip

    # Coarse: score every tile on the overview, pick the ones to read.
    max_tiles = options.max_tiles
    chosen: list[int] = []
    scores = np.zeros(len(grid.tiles))
    valid_fraction = np.ones(len(grid.tiles))
    if max_tiles > 0:
        valid = overview.valid_mask()
        rgb = overview_in.array if not encoder_input.multiband else overview.array[:, :, :3]
        relevance = None
        if max_tiles < len(grid.tiles) and prompt.strip() and options.relevance_weight > 0:
            relevance = text_relevance(
                assistant.model, overview_in, prompt, _relevance_side(config)
            )
        # Detail on cells of about an eighth of a tile: structure, not pixel noise.
        block = max(1, int(tile_px / max(ov_scale) / 8))
        scores, valid_fraction = score_tiles(
            grid, valid, _detail_map(rgb, block), relevance, options.relevance_weight
        )
        chosen = select_tiles(scores, valid_fraction, max_tiles)
    with_data = int((valid_fraction >= 0.01).sum())

    # Fine: the overview and the chosen tiles, in batches. "How many X" questions are answered
    # by detecting X in every tile and counting the merged detections: exact, and located.
    count_target = _count_target(prompt) if task in ("vqa", None) else None
    ask_task, ask_prompt = ("detect", count_target) if count_target else (task, prompt)
    base_request = {"prompt": ask_prompt, "task": ask_task, "tiling": False}
    overview_answer = assistant.ask_batch(
        [{**base_request, "image": overview_in, "history": history}],
        batch_size=1, max_new_tokens=max_new_tokens, **sampling,
    )[0]  # fmt: skip
    tile_answers: dict[int, Any] = {}
    tile_sizes: dict[int, tuple[int, int]] = {}
    for start in range(0, len(chosen), options.batch_size):
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
            tile_sizes[index] = tile_image.size
            requests.append({**base_request, "image": tile_image})
        answers = assistant.ask_batch(
            requests, batch_size=options.batch_size, max_new_tokens=max_new_tokens, **sampling
        )
        tile_answers.update(zip(batch, answers, strict=True))
        if progress is not None:
            progress(min(start + options.batch_size, len(chosen)), len(chosen))
        logger.info(
            "tiles: %d/%d answered", min(start + options.batch_size, len(chosen)), len(chosen)
        )

    # Merge.
    read_area = (
        shapely.unary_union([box(*grid.tiles[i].bounds) for i in chosen]) if chosen else None
    )
    pieces: list[_Piece] = []
    for index, answer in tile_answers.items():
        pieces += _tile_geometry(answer, grid.tiles[index], grid, tile_sizes[index])
    overview_tile = Tile(
        -1, 0, 0, (0, 0, source.width, source.height), (0, 0, source.width, source.height)
    )
    for piece in _tile_geometry(overview_answer, overview_tile, grid, overview_in.size):
        centre = piece.shape.centroid
        if read_area is None or not read_area.contains(centre):
            piece.tile, piece.cut = None, False
            pieces.append(piece)
    merged = merge_geometries(pieces)
    boxes, oboxes, polygons = _pieces_to_items(merged)

    mask = None
    mask_transform = None
    tile_masks = {i: a.mask for i, a in tile_answers.items() if a.mask is not None}
    if tile_masks or overview_answer.mask is not None:
        scale = max(1.0, max(source.width, source.height) / MASK_MAX_SIDE)
        out_shape = (max(1, round(source.height / scale)), max(1, round(source.width / scale)))
        mask = mosaic_masks(grid, tile_masks, out_shape, overview_answer.mask)
        if scale > 1 and source.georef is not None:
            mask_transform = source.georef.scaled(
                source.width / out_shape[1], source.height / out_shape[0]
            ).transform

    counts: dict[str, int] = {}
    tile_texts = {i: a.text for i, a in tile_answers.items()}
    counted_from: dict[str, int] | None = None
    if count_target is not None:
        _, counts = _counts_text(boxes, oboxes, polygons)
        text, how = str(len(boxes) + len(oboxes) + len(polygons)), "count_of_merged_detections"
        from_overview = sum(p.tile is None for p in merged)
        counted_from = {"tiles": len(merged) - from_overview, "overview": from_overview}
    elif task in GEOMETRY_TASKS and task != "segment":
        text, counts = _counts_text(boxes, oboxes, polygons)
        how = "geometry_merged"
    elif task in SUMMARY_TASKS and options.summarise and tile_texts:
        text = _summarise(assistant, overview_answer.text, tile_texts, max_new_tokens, sampling)
        how = "summary_of_overview_and_tiles"
    else:
        text, how = merge_text(task, prompt, overview_answer.text, tile_texts, grid)

    complete = len(chosen) >= with_data
    read_fraction = _read_fraction(grid, chosen, valid_fraction)
    coverage: dict[str, Any] = {
        "mode": "tiled" if chosen else "overview",
        "complete": bool(complete and chosen),
        "tiles_read": len(chosen),
        "tiles_total": len(grid.tiles),
        "tiles_with_data": with_data,
        "fraction_read": round(read_fraction, 4),
        "tile_px": tile_px,
        "overlap_px": overlap_px,
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
    if not coverage["complete"]:
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
        else:
            coverage["note"] = (
                f"answered from a {overview.width}×{overview.height} overview of the "
                f"{source.width}×{source.height} scene; small objects may be missed — "
                "allow tiles (max_tiles > 0) to read it at full resolution"
            )
    answer = Answer(
        text=text,
        boxes=boxes,
        obboxes=oboxes,
        polygons=polygons,
        mask=mask,
        parse_errors=sorted(
            {e for a in (overview_answer, *tile_answers.values()) for e in a.parse_errors}
        ),
        raw=overview_answer.raw,
        task=task,
        image_size=(source.width, source.height),
        history=_history(history, task, prompt, text),
    )
    answer.coverage = coverage
    if mask_transform is not None:
        answer.geo = {"mask_transform": list(mask_transform)[:6]}
    add_map_geometry(answer, source.georef)
    return answer


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


def _summarise(
    assistant: Any,
    overview_text: str,
    tile_texts: dict[int, str],
    max_new_tokens: int,
    sampling: dict,
) -> str:
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
        return assistant.ask_batch(
            [{"image": None, "prompt": prompt, "tiling": False}],
            batch_size=1,
            max_new_tokens=max_new_tokens,
            **sampling,
        )[0].text
    except GeoAssistError as exc:  # e.g. the context is too short for the parts
        logger.info("summary skipped: %s", exc)
        return overview_text


def _answer_region(assistant: Any, source: RasterSource, prompt: str, region: Sequence[float],
                   encoder_input: _EncoderInput, *, task, history, max_new_tokens, **sampling) -> Any:  # fmt: skip
    """The region task on a large scene: one window around the region, read at full resolution."""
    size = assistant.config.preprocess.image_size
    x1, y1, x2, y2 = (float(v) for v in region)
    side = int(max(x2 - x1, y2 - y1) * 2)
    side = min(max(side, size), max(source.width, source.height))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = min(side, source.width), min(side, source.height)
    col = int(min(max(cx - w / 2, 0), source.width - w))
    row = int(min(max(cy - h / 2, 0), source.height - h))
    scale = max(w, h) / size if max(w, h) > 2 * size else 1.0
    out = (max(1, round(w / scale)), max(1, round(h / scale)))
    crop = encoder_input(source.read((col, row, w, h), out))
    local = [(x1 - col) / scale, (y1 - row) / scale, (x2 - col) / scale, (y2 - row) / scale]
    answer = assistant.ask_batch(
        [{"image": crop, "prompt": prompt, "task": task, "history": history, "region": local, "tiling": False}],
        batch_size=1, max_new_tokens=max_new_tokens, **sampling,
    )[0]  # fmt: skip
    for item in answer.boxes:
        bx1, by1, bx2, by2 = item["box"]
        item["box"] = [
            round(bx1 * scale + col, 2),
            round(by1 * scale + row, 2),
            round(bx2 * scale + col, 2),
            round(by2 * scale + row, 2),
        ]
    for item in answer.polygons:
        item["points"] = [
            [round(x * scale + col, 2), round(y * scale + row, 2)] for x, y in item["points"]
        ]
    answer.obboxes = []
    answer.mask = None
    answer.image_size = (source.width, source.height)
    for item in answer.boxes:
        for key in ("box_map", "polygon_map", "polygon_lonlat", "bbox_lonlat"):
            item.pop(key, None)
    for item in answer.polygons:
        for key in ("points_map", "points_lonlat"):
            item.pop(key, None)
    answer.coverage = {
        "mode": "region_window",
        "complete": True,
        "window": [col, row, w, h],
        "note": None,
    }
    add_map_geometry(answer, source.georef)
    return answer
