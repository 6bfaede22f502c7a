"""The mask codec of the answer grammar: ``<mask>RxC|row;row;...</mask>`` (Text4Seg style).

A mask travels in text as a grid of R x C cell labels, run-length encoded row by row
(``docs/FORMATS.md``). This module turns boolean masks into grids and grids into text
(:func:`format_mask`), and reads the text back into a grid (:func:`decode_mask_body`). Reading
never builds the full-resolution mask: that is :func:`grid_to_mask`'s job, done on demand
(``ParseResult.mask``), so what a hostile answer costs to read is bounded by the grid
(at most ``MAX_MASK_SIDE`` squared cells), whatever the image size. Public names are
re-exported by :mod:`geoassist.formats`.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from geoassist.format_grammar import check_image_size

__all__ = [
    "MAX_MASK_SIDE",
    "DEFAULT_MASK_GRID",
    "mask_to_grid",
    "grid_to_mask",
    "grid_area_px",
    "format_mask",
    "decode_mask_body",
    "MaskDecoding",
]

MAX_MASK_SIDE = 512
"""Largest mask grid side the parser accepts; bounds the memory a hostile answer can ask for."""

DEFAULT_MASK_GRID = (16, 16)

_MASK_HEADER_RE = re.compile(r"\s*(\d{1,6})\s*x\s*(\d{1,6})\s*\|", re.IGNORECASE | re.ASCII)
_RUN_RE = re.compile(r"\s*([01])\s*(?:\*\s*(\d+)\s*)?", re.ASCII)


def _cell_edges(n_cells: int, n_pixels: int) -> np.ndarray:
    # Cell k covers pixels [edges[k], edges[k + 1]); cells are empty when n_cells > n_pixels.
    return (np.arange(n_cells + 1, dtype=np.int64) * n_pixels) // n_cells


def _grid_shape(grid: Sequence[int]) -> tuple[int, int]:
    try:
        rows, cols = (operator.index(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (rows, cols) as two integers, got {grid!r}") from None
    if not (1 <= rows <= MAX_MASK_SIDE and 1 <= cols <= MAX_MASK_SIDE):
        raise ValueError(f"grid sides must be in 1..{MAX_MASK_SIDE}, got {rows}x{cols}")
    return rows, cols


def _sum_cells(values: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    starts = edges[:-1]
    nonempty = edges[1:] > starts
    shape = list(values.shape)
    shape[axis] = len(starts)
    sums = np.zeros(shape, dtype=np.int64)
    if nonempty.any():
        # reduceat sums from one start to the next, so passing only the starts of non-empty
        # cells gives each of them exactly its own pixels; empty cells stay 0.
        index = [slice(None)] * values.ndim
        index[axis] = nonempty
        sums[tuple(index)] = np.add.reduceat(values, starts[nonempty], axis=axis, dtype=np.int64)
    return sums


def mask_to_grid(mask: np.ndarray, grid: Sequence[int] = DEFAULT_MASK_GRID) -> np.ndarray:
    """Boolean (H, W) mask -> (rows, cols) uint8 grid; a cell is 1 when >= 50 % of its pixels are set."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got shape {mask.shape}")
    rows, cols = _grid_shape(grid)
    height, width = mask.shape
    row_edges, col_edges = _cell_edges(rows, height), _cell_edges(cols, width)
    sums = _sum_cells(_sum_cells(mask.astype(bool), row_edges, 0), col_edges, 1)
    area = np.diff(row_edges)[:, None] * np.diff(col_edges)[None, :]
    return ((area > 0) & (2 * sums >= area)).astype(np.uint8)


def grid_to_mask(grid: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """(rows, cols) label grid -> boolean (H, W) mask by nearest upsampling of the cells."""
    width, height = check_image_size(image_size)
    cells = np.asarray(grid).astype(bool)
    rows, cols = _grid_shape(cells.shape)
    # Cell k covers pixels [edges[k], edges[k + 1]): repeating k that many times maps each pixel.
    row_of_pixel = np.repeat(np.arange(rows), np.diff(_cell_edges(rows, height)))
    col_of_pixel = np.repeat(np.arange(cols), np.diff(_cell_edges(cols, width)))
    # np.ix_ gathers straight into the (H, W) result: no (H, cols) intermediate, which would be
    # larger than the mask itself when the grid is finer than the image.
    return cells[np.ix_(row_of_pixel, col_of_pixel)]


def _encode_row(row: np.ndarray) -> str:
    bounds = [0, *(np.flatnonzero(np.diff(row)) + 1).tolist(), len(row)]
    runs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=False):
        value, count = int(row[start]), end - start
        runs.append(f"{value}*{count}" if count > 1 else str(value))
    return ",".join(runs)


def format_mask(mask: np.ndarray, grid: Sequence[int] = DEFAULT_MASK_GRID) -> str:
    """``<mask>RxC|rows</mask>`` for a boolean (H, W) mask, cells set by majority (>= 50 %)."""
    cells = mask_to_grid(mask, grid)
    rows = ";".join(_encode_row(row) for row in cells)
    return f"<mask>{cells.shape[0]}x{cells.shape[1]}|{rows}</mask>"


def grid_area_px(grid: np.ndarray, image_size: Sequence[int]) -> int:
    """Pixels set in ``grid_to_mask(grid, image_size)``, computed from the cells without building it."""
    width, height = check_image_size(image_size)
    cells = np.asarray(grid).astype(bool)
    rows, cols = _grid_shape(cells.shape)
    row_px = np.diff(_cell_edges(rows, height))
    col_px = np.diff(_cell_edges(cols, width))
    return int(row_px @ cells.astype(np.int64) @ col_px)


@dataclass
class MaskDecoding:
    """What :func:`decode_mask_body` read: the grid (None when the tag had to be dropped)."""

    grid: np.ndarray | None
    dropped: str | None = None
    repairs: list[str] = field(default_factory=list)


def _decode_row(text: str, cols: int) -> tuple[list[int], bool]:
    """One run-length row -> ``cols`` cell labels, and whether it had to be repaired.

    Linear in the row's text: runs are cut at the row's end as they are read, so a run that
    claims millions of cells costs no more than one that fits.
    """
    cells: list[int] = []
    clean = True
    for token in text.split(","):
        match = _RUN_RE.fullmatch(token)
        if match is None:
            clean = False
            continue
        digits = match[2]
        if digits is None:
            count = 1
        elif len(digits) > 6:
            count = cols + 1  # longer than any row can be; cut below without building it
        else:
            count = int(digits)
        if count == 0:
            clean = False
            continue
        # Never build more than one cell past the row, however long the runs claim to be.
        cells.extend([int(match[1])] * max(0, min(count, cols + 1 - len(cells))))
    if len(cells) != cols:
        clean = False
    return (cells + [0] * cols)[:cols], clean


def decode_mask_body(body: str) -> MaskDecoding:
    """The grid of a ``<mask>`` tag's body ``RxC|row;row;...``, with what had to be repaired.

    Work and memory are linear in ``len(body)`` plus the grid (at most ``MAX_MASK_SIDE``
    squared cells); the image size plays no part.
    """
    header = _MASK_HEADER_RE.match(body)
    if header is None:
        return MaskDecoding(None, "expected 'RxC|row;row;...'")
    rows, cols = int(header[1]), int(header[2])
    if not (1 <= rows <= MAX_MASK_SIDE and 1 <= cols <= MAX_MASK_SIDE):
        return MaskDecoding(None, f"grid sides must be in 1..{MAX_MASK_SIDE}, got {rows}x{cols}")
    decoding = MaskDecoding(np.zeros((rows, cols), dtype=np.uint8))
    # maxsplit keeps the work bounded when an answer has far more rows than its header says.
    row_texts = body[header.end() :].split(";", rows)
    extra = len(row_texts) > rows
    row_texts = row_texts[:rows]
    if extra or len(row_texts) != rows:
        found = f"more than {rows}" if extra else str(len(row_texts))
        decoding.repairs.append(
            f"{found} rows for a {rows}x{cols} grid; missing rows set to 0, extra rows ignored"
        )
    bad_rows = []
    for r, row_text in enumerate(row_texts):
        cells, clean = _decode_row(row_text, cols)
        decoding.grid[r] = cells
        if not clean:
            bad_rows.append(r)
    if bad_rows:
        shown = ", ".join(map(str, bad_rows[:8])) + (", ..." if len(bad_rows) > 8 else "")
        rows_word = "rows" if len(bad_rows) > 1 else "row"
        decoding.repairs.append(
            f"{rows_word} {shown} had bad runs or did not add up to {cols} cells; padded with 0 or cut"
        )
    return decoding
