"""Large scenes: windowed reading, tiling at the model's GSD, coarse-to-fine tile choice, merging.

An image larger than the encoder's input is not shrunk until small objects vanish.
:func:`answer_large` reads it through a :class:`RasterSource` (rasterio windows of
a GeoTIFF/COG, JPEG 2000, ENVI or NetCDF file — also over HTTP range reads when
given a URL — a band-per-file product, or an in-memory array), so the whole raster
is never held in memory, and:

1. plans a grid of overlapping tiles whose size is the encoder's input at the
   model's ground sample distance (:func:`plan_tiles`); each tile *owns* the part
   of the scene nearer to it than to its neighbours (its core), so cores
   partition the scene;
2. reads a low-resolution overview (the file's own overviews when it has them)
   and scores every tile on it — valid (non-nodata) fraction, detail, and, when
   the question has text, how close the overview's projected visual tokens come
   to the question's embedding in the LM's input space (text-guided selection, as
   in token pruning for large remote-sensing images) — then reads the best tiles
   up to a budget (``max_tiles``, 64 by default);
3. answers the overview and the tiles in batches (:meth:`Assistant.ask_batch`)
   and merges (:func:`merge_geometries`, :func:`mosaic_masks`, :func:`merge_text`):
   boxes, oriented boxes and polygons seen by several tiles become one (same label,
   IoU ≥ 0.5, or mostly inside one another when one was cut by its tile's edge;
   cut pieces join into their union), so counts do not double count; masks are
   mosaicked core by core over the overview's mask; numeric answers are summed
   with each tile weighted by the share of it that it owns; captions come from the
   overview's caption plus the tiles' (summarised by the LM);
4. says in ``Answer.coverage`` how much of the scene it read, with a note when it
   did not read all of it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from geoassist.errors import BandMismatchError, GeoAssistError, ImageError
from geoassist.geo import Georef, add_map_geometry

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_TILES",
    "Tile",
    "TileGrid",
    "TilingOptions",
    "RasterSource",
    "plan_tiles",
    "score_tiles",
    "select_tiles",
    "merge_geometries",
    "mosaic_masks",
    "merge_text",
    "answer_large",
    "answer_if_large",
]

DEFAULT_MAX_TILES = 64
OVERVIEW_MAX_SIDE = 1024
MASK_MAX_SIDE = 8192
GDAL_CACHE_MB = 256
GEOMETRY_TASKS = ("detect", "detect_obb", "ground", "refer", "segment")
SUMMARY_TASKS = ("caption", "change")
SUMMARY_PROMPT = (
    "Below are descriptions of one large satellite image: first of the whole scene seen at low "
    "resolution, then of parts of it seen in detail. Write one short description of the whole "
    "scene.\n\nWhole scene: {overview}\nParts:\n{parts}"
)


@dataclass
class TilingOptions:
    """How large scenes are tiled.

    ``max_tiles`` bounds the tiles read per question (0: never tile, answer from a
    downscaled overview read by window). ``Assistant.ask(..., tiling=False)`` turns the
    large-scene path off altogether: the image is loaded whole and resized, as small ones are. ``tile_px`` overrides the tile size in source pixels
    (default: the encoder's input at ``PreprocessConfig.gsd_m``, or 1:1 when the
    model's or the raster's GSD is unknown); ``overlap`` is a fraction of it.
    Images up to ``min_side_px`` (and up to twice a tile) are not tiled.
    ``relevance_weight`` is the share of the question's text relevance (against
    image detail) in choosing tiles; ``summarise`` lets the LM merge captions.
    """

    max_tiles: int = DEFAULT_MAX_TILES
    tile_px: int | None = None
    overlap: float = 0.125
    min_side_px: int = 512
    batch_size: int = 8
    summarise: bool = True
    relevance_weight: float = 0.5
    overview_max_side: int = OVERVIEW_MAX_SIDE

    def __post_init__(self) -> None:
        if self.max_tiles < 0:
            raise GeoAssistError(f"max_tiles must be >= 0, got {self.max_tiles}")
        if not 0 <= self.overlap < 0.5:
            raise GeoAssistError(f"tile overlap must be in [0, 0.5), got {self.overlap}")
        if self.tile_px is not None and self.tile_px < 8:
            raise GeoAssistError(f"tile_px must be at least 8, got {self.tile_px}")


# ---------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Tile:
    """One tile: ``window`` (col_off, row_off, width, height) and ``core`` (x0, y0, x1, y1) in source pixels."""

    index: int
    row: int
    col: int
    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        c, r, w, h = self.window
        return c, r, c + w, r + h


@dataclass
class TileGrid:
    width: int
    height: int
    tile_px: int
    overlap_px: int
    tiles: list[Tile]
    n_cols: int
    n_rows: int
    col_cuts: list[int] = field(repr=False, default_factory=list)
    row_cuts: list[int] = field(repr=False, default_factory=list)

    def owner(self, x: float, y: float) -> int:
        """Index of the tile whose core holds the point (x, y) (clamped into the scene)."""
        col = int(np.searchsorted(self.col_cuts, x, side="right")) - 1
        row = int(np.searchsorted(self.row_cuts, y, side="right")) - 1
        col = min(max(col, 0), self.n_cols - 1)
        row = min(max(row, 0), self.n_rows - 1)
        return row * self.n_cols + col


def _axis(length: int, tile: int, overlap: int) -> tuple[list[int], list[int], list[int]]:
    """Starts, sizes and core cut positions along one axis."""
    if length <= tile:
        return [0], [length], [0, length]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    cuts = [0] + [(starts[i - 1] + tile + starts[i]) // 2 for i in range(1, n)] + [length]
    return starts, [tile] * n, cuts


def plan_tiles(width: int, height: int, tile_px: int, overlap_px: int) -> TileGrid:
    """Overlapping tiles of ``tile_px`` covering a ``width`` × ``height`` scene, evenly spaced.

    Every overlap is at least ``overlap_px``; tiles keep their full size (the last
    one is not a sliver); a scene side shorter than a tile gets one tile of that
    side. Cores cut each overlap in the middle, so they partition the scene.
    """
    if tile_px <= overlap_px:
        raise GeoAssistError(
            f"tile overlap ({overlap_px}) must be smaller than the tile ({tile_px})"
        )
    xs, ws, col_cuts = _axis(width, tile_px, overlap_px)
    ys, hs, row_cuts = _axis(height, tile_px, overlap_px)
    tiles = []
    for r, (y, h) in enumerate(zip(ys, hs, strict=True)):
        for c, (x, w) in enumerate(zip(xs, ws, strict=True)):
            core = (col_cuts[c], row_cuts[r], col_cuts[c + 1], row_cuts[r + 1])
            tiles.append(Tile(len(tiles), r, c, (x, y, w, h), core))
    return TileGrid(
        width, height, tile_px, overlap_px, tiles, len(xs), len(ys), col_cuts[:-1], row_cuts[:-1]
    )


# ------------------------------------------------------------------- the source


class RasterSource:
    """A raster read window by window: a file, URL or GDAL name, a band-per-file product, or an array.

    ``read(window, out_size)`` returns an :class:`~geoassist.io.Image` of that
    window (resampled to ``out_size`` when given) with its georeferencing;
    ``overview(max_side)`` a downscaled copy of the whole scene, from the file's
    own overviews when it has them. GDAL's block cache is capped at
    ``GDAL_CACHE_MB`` while reading.
    """

    def __init__(self, name: str, width: int, height: int, band_names: Sequence[str], dtype: str,
                 nodata: float | None, georef: Georef | None) -> None:  # fmt: skip
        self.name = name
        self.width, self.height = int(width), int(height)
        self.band_names = list(band_names)
        self.dtype = dtype
        self.nodata = nodata
        self.georef = georef
        self.has_overviews = False

    @property
    def count(self) -> int:
        return len(self.band_names)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- opening
    @staticmethod
    def open(source: Any) -> RasterSource:
        """A source for a path, URL (``http(s)://``, ``s3://``…), band folder, Image or array."""
        from geoassist.io import Image, load_image

        if isinstance(source, (Image, np.ndarray)):
            return _ArraySource(source if isinstance(source, Image) else load_image(source))
        text = str(source)
        if _is_gdal_name(text):
            return _RasterioSource(text)
        path = Path(text).expanduser()
        if path.is_dir():
            return _BandStackSource(path)
        return _RasterioSource(str(path))

    # -- reading (subclasses implement _read)
    def read(
        self,
        window: tuple[int, int, int, int] | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> Any:
        from geoassist.io import Image

        col, row, w, h = window if window is not None else (0, 0, self.width, self.height)
        if w <= 0 or h <= 0 or col < 0 or row < 0 or col + w > self.width or row + h > self.height:
            raise ImageError(
                f"window {window} does not fit inside {self.name} ({self.width}×{self.height})"
            )
        out_w, out_h = out_size if out_size is not None else (w, h)
        array = self._read((col, row, w, h), (out_w, out_h))
        georef = None
        if self.georef is not None:
            georef = self.georef.window(col, row).scaled(w / out_w, h / out_h)
        return Image(
            array,
            self.band_names,
            nodata=self.nodata,
            transform=georef.transform if georef else None,
            crs=georef.crs if georef else None,
            source=f"{self.name}[{col},{row},{w},{h}]",
        )

    def overview(self, max_side: int) -> Any:
        """The whole scene resampled so that its longer side is at most ``max_side``."""
        scale = max(self.width, self.height) / max_side
        if scale <= 1:
            return self.read()
        out = (max(1, round(self.width / scale)), max(1, round(self.height / scale)))
        return self.read(None, out)

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_GDAL_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]+:(?!\\)|/vsi)")


def _is_gdal_name(text: str) -> bool:
    """A URL (``https://``, ``s3://``), a GDAL subdataset (``NETCDF:"f.nc":var``) or a ``/vsi…`` path."""
    return "://" in text or bool(_GDAL_NAME.match(text))


def _resampling(window: tuple[int, int, int, int], out_size: tuple[int, int]):
    from rasterio.enums import Resampling

    if out_size == (window[2], window[3]):
        return Resampling.nearest
    return Resampling.average if out_size[0] < window[2] else Resampling.bilinear


class _RasterioSource(RasterSource):
    def __init__(self, path: str) -> None:
        import rasterio

        from geoassist.errors import CorruptImageError, ImageNotFoundError
        from geoassist.io import _RasterioReader

        self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self._env.__enter__()
        if not _is_gdal_name(path) and not Path(path).exists():
            self._env.__exit__(None, None, None)
            raise ImageNotFoundError(f"no such image file: {path}")
        try:
            self.ds = rasterio.open(path)
        except (rasterio.errors.RasterioError, OSError) as exc:
            self._env.__exit__(None, None, None)
            raise CorruptImageError(f"{path} cannot be opened by rasterio ({exc})") from exc
        reader = _RasterioReader(self.ds, path, keep_palette=False)
        info = reader.info
        self._palette = reader.palette
        georef = (
            Georef(info.transform, info.crs, info.width, info.height)
            if info.transform is not None
            else None
        )
        super().__init__(
            path, info.width, info.height, info.band_names, info.dtype, info.nodata, georef
        )
        self.has_overviews = bool(self.ds.overviews(1))
        self.driver = self.ds.driver

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        win = Window(*window)
        out_w, out_h = out_size
        if self._palette is not None:
            indices = self.ds.read(
                1, window=win, out_shape=(out_h, out_w), resampling=Resampling.nearest
            )
            return self._palette[np.clip(indices, 0, len(self._palette) - 1)]
        data = self.ds.read(
            window=win,
            out_shape=(self.ds.count, out_h, out_w),
            resampling=_resampling(window, out_size),
            out_dtype=self.dtype,
        )
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        if getattr(self, "ds", None) is not None:
            self.ds.close()
            self.ds = None
            self._env.__exit__(None, None, None)


class _BandStackSource(RasterSource):
    def __init__(self, folder: Path) -> None:
        from geoassist.sensors import BandStack

        self.stack = BandStack.from_folder(folder)
        s = self.stack
        super().__init__(
            str(folder), s.width, s.height, s.band_names, s.dtype,
            s.nodata, Georef(s.transform, s.crs, s.width, s.height),
        )  # fmt: skip

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        from rasterio.windows import Window

        resampling = _resampling(window, out_size).name
        data = self.stack.read(Window(*window), (out_size[1], out_size[0]), resampling)
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        self.stack.close()


class _ArraySource(RasterSource):
    def __init__(self, image: Any) -> None:
        self.image = image
        super().__init__(
            image.source or "array", image.width, image.height, image.band_names,
            str(image.dtype), image.nodata, Georef.from_image(image),
        )  # fmt: skip

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        col, row, w, h = window
        part = self.image.array[row : row + h, col : col + w]
        if out_size == (w, h):
            return part
        # Nearest-neighbour sampling at pixel centres: cheap and dtype-preserving.
        xs = np.minimum(((np.arange(out_size[0]) + 0.5) * w / out_size[0]).astype(int), w - 1)
        ys = np.minimum(((np.arange(out_size[1]) + 0.5) * h / out_size[1]).astype(int), h - 1)
        return part[ys][:, xs]


# ------------------------------------------------------------- encoder input


class _EncoderInput:
    """Turns windows of one scene into what the model's preprocessing takes, with one colour stretch.

    Multi-band models get the bands as they are (normalised later with fixed
    statistics). RGB models get a uint8 composite whose stretch is computed once on
    the overview, so that tiles share one colour scale.
    """

    def __init__(self, config: Any, overview: Any, *, bands=None, sensor=None, composite=None):
        from geoassist.sensors import INDICES, compute_stretch, detect_sensor, get_sensor

        self.multiband = len(config.bands) != 3
        self.index_name: str | None = None
        self.sensor = None
        self.indexes: list[int] = []
        self.limits: np.ndarray | None = None
        if self.multiband:
            return
        names = overview.band_names
        lowered = [n.lower() for n in names]
        if sensor is not None or composite is not None:
            self.sensor = get_sensor(sensor) if sensor is not None else None
            key = (composite or "true_color").lower().replace("-", "_")
            if key in INDICES:
                self.index_name = key
                return
            from geoassist.sensors import sensor_for

            self.sensor = sensor_for(overview, self.sensor)
            self.indexes = self.sensor.locate(names, self.sensor.composite_bands(key))
        elif bands is not None:
            from geoassist.io import _resolve_bands

            self.indexes = _resolve_bands(bands, names, overview.source)
        elif all(c in lowered for c in ("red", "green", "blue")):
            self.indexes = [lowered.index(c) for c in ("red", "green", "blue")]
        elif overview.count == 1 or "gray" in lowered:
            self.indexes = [lowered.index("gray") if "gray" in lowered else 0]
        elif overview.count == 3 or (
            overview.count == 4 and lowered == [f"band_{i}" for i in range(1, 5)]
        ):
            self.indexes = [0, 1, 2]  # as io.Image.to_rgb_uint8: R, G, B (+ NIR)
        elif (found := detect_sensor(names)) is not None:
            self.sensor = found
            self.indexes = found.locate(names, found.composite_bands("true_color"))
        else:
            raise BandMismatchError(
                f"cannot tell which bands are red, green and blue in {overview.source}: bands "
                f"{', '.join(names[:16])}; pass bands=[...] or sensor=/composite="
            )
        if len(self.indexes) not in (1, 3):
            raise BandMismatchError(f"a composite needs 3 bands (or 1), got {len(self.indexes)}")
        if overview.dtype != np.uint8:
            self.limits = compute_stretch(overview, self.indexes, tuple(config.stretch_percentiles))

    def __call__(self, image: Any) -> Any:
        from geoassist.io import Image
        from geoassist.sensors import apply_stretch, make_composite

        if self.multiband:
            # The model answers in the window's pixels; map coordinates come from the source.
            return Image(image.array, image.band_names, nodata=image.nodata, source=image.source)
        if self.index_name is not None:
            rgb = make_composite(image, self.sensor, self.index_name)
        else:
            chosen = image.array[:, :, self.indexes]
            if self.limits is not None:
                chosen = apply_stretch(chosen, self.limits, image.valid_mask())
            rgb = np.repeat(chosen, 3, axis=2) if chosen.shape[2] == 1 else chosen
        return Image(np.ascontiguousarray(rgb), ["red", "green", "blue"], source=image.source)


# -------------------------------------------------------------- tile selection


def _footprints(grid: TileGrid, shape_hw: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Each tile's window as slices of an array of ``shape_hw`` covering the whole scene."""
    sy, sx = shape_hw[0] / grid.height, shape_hw[1] / grid.width
    out = []
    for t in grid.tiles:
        x0, y0, x1, y1 = t.bounds
        c0, c1 = int(x0 * sx), max(int(x0 * sx) + 1, math.ceil(x1 * sx))
        r0, r1 = int(y0 * sy), max(int(y0 * sy) + 1, math.ceil(y1 * sy))
        out.append((slice(r0, min(r1, shape_hw[0])), slice(c0, min(c1, shape_hw[1]))))
    return out


def _rank01(values: np.ndarray) -> np.ndarray:
    if values.size <= 1:
        return np.ones_like(values, dtype=float)
    order = values.argsort(kind="stable").argsort(kind="stable")
    return order / (values.size - 1)


def score_tiles(
    grid: TileGrid,
    valid: np.ndarray,
    detail: np.ndarray,
    relevance: np.ndarray | None = None,
    relevance_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile scores and valid fractions from overview maps.

    ``valid`` (bool) and ``detail`` (float) cover the scene at overview
    resolution; ``relevance`` (any resolution) is the question's closeness to
    each place, or None. A tile's score is its valid fraction times its detail
    rank — mixed with its relevance rank (``relevance_weight``) when there is one.
    """
    frac = np.array(
        [valid[f].mean() if valid[f].size else 0.0 for f in _footprints(grid, valid.shape)]
    )
    det = np.array(
        [detail[f].mean() if detail[f].size else 0.0 for f in _footprints(grid, detail.shape)]
    )
    score = _rank01(det)
    if relevance is not None:
        rel = np.array(
            [
                relevance[f].mean() if relevance[f].size else 0.0
                for f in _footprints(grid, relevance.shape)
            ]
        )
        score = (1 - relevance_weight) * score + relevance_weight * _rank01(rel)
    return frac * (0.05 + 0.95 * score), frac


def select_tiles(scores: np.ndarray, valid_fraction: np.ndarray, max_tiles: int) -> list[int]:
    """Indices of the tiles to read: all tiles with data when they fit the budget, else the best."""
    candidates = [i for i in range(len(scores)) if valid_fraction[i] >= 0.01]
    if len(candidates) <= max_tiles:
        return candidates
    best = sorted(candidates, key=lambda i: (-scores[i], i))[:max_tiles]
    return sorted(best)


def _detail_map(rgb: np.ndarray, block: int = 1) -> np.ndarray:
    """Local contrast of an overview, after averaging ``block``×``block`` cells (drops pixel noise)."""
    gray = rgb.astype(np.float32).mean(axis=2)
    if block > 1:
        h, w = (gray.shape[0] // block) * block, (gray.shape[1] // block) * block
        if h and w:
            gray = gray[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    gx = np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    gy = np.abs(np.diff(gray, axis=0, append=gray[-1:, :]))
    return gx + gy


def text_relevance(model: Any, image: Any, prompt: str, side: int) -> np.ndarray | None:
    """(g, g) closeness of the question to each place of ``image`` in the LM's input space.

    The image is encoded once at ``side`` pixels; its patch tokens go through the
    projector (without pooling) and are compared by cosine similarity with the mean
    input embedding of the question's tokens. None for an empty question.
    """
    import torch

    from geoassist.preprocess import to_pixel_values

    words = re.sub(r"\[[a-z_]+\]", " ", prompt).strip()
    if not words:
        return None
    config = dataclasses.replace(model.config.preprocess, image_size=side)
    with torch.no_grad():
        device = next(model.parameters()).device
        pixels = to_pixel_values(image, config).unsqueeze(0).to(device)
        tokens = model.vision(pixels)
        if model.vision.config.use_cls_token:
            tokens = tokens[:, 1:]
        visual = model.projector.proj(tokens)[0].float()
        ids = model.tokenizer(words, add_special_tokens=False, return_tensors="pt").input_ids.to(
            device
        )
        if ids.numel() == 0:
            return None
        text = model.lm.get_input_embeddings()(ids)[0].float().mean(0)
        sim = torch.nn.functional.cosine_similarity(visual, text.unsqueeze(0), dim=-1)
    g = int(math.isqrt(sim.numel()))
    return sim[: g * g].reshape(g, g).cpu().numpy()


# ------------------------------------------------------------------------ merging


@dataclass
class _Piece:
    kind: str  # box, obox, polygon
    shape: Polygon
    label: str | None
    score: float | None
    tile: int | None  # None: from the overview
    cut: bool  # touches an edge of its tile that lies inside the scene
    foreign: bool = False  # its centre lies in another tile's core (or on the edge of its own)
    tiles: set = field(default_factory=set)

    def key(self) -> str:
        return (self.label or "").strip().lower()


def _is_cut(shape: Polygon, tile: Tile, grid: TileGrid, tol: float) -> bool:
    """Whether the geometry touches an edge of its tile that is inside the scene."""
    x0, y0, x1, y1 = shape.bounds
    tx0, ty0, tx1, ty1 = tile.bounds
    return (
        (x0 <= tx0 + tol and tx0 > 0)
        or (y0 <= ty0 + tol and ty0 > 0)
        or (x1 >= tx1 - tol and tx1 < grid.width)
        or (y1 >= ty1 - tol and ty1 < grid.height)
    )


def _join(a: _Piece, b: _Piece) -> Polygon:
    union = shapely.unary_union([a.shape, b.shape])
    if a.kind == "box":
        return box(*union.bounds)
    if a.kind == "obox":
        return shapely.minimum_rotated_rectangle(union)
    return union if isinstance(union, Polygon) else union.convex_hull


def merge_geometries(pieces: list[_Piece], iou: float = 0.5, ios: float = 0.3) -> list[_Piece]:
    """One piece per object from per-tile pieces.

    Pieces of one tile are never merged with each other (the model told them
    apart). Pieces of different tiles with the same label are the same object when
    their IoU is at least ``iou``, or when one of them is not its tile's to judge —
    cut by the tile's edge, or centred in another tile's core — and their
    intersection covers at least ``ios`` of the smaller one (two views of one object
    from differently aligned tiles rarely agree to the pixel). Pieces are taken in
    order of trust: whole and owned first. Two cut pieces join into their union;
    otherwise the trusted piece stands for the object.
    """
    order = sorted(
        pieces,
        key=lambda p: (p.cut, p.foreign, -p.shape.area, p.tile if p.tile is not None else -1),
    )
    kept: list[_Piece] = []
    bounds = np.zeros((len(order), 4))
    for piece in order:
        piece.tiles = {piece.tile}
        b = np.array(piece.shape.bounds)
        merged = False
        if kept:
            kb = bounds[: len(kept)]
            overlap = (kb[:, 0] < b[2]) & (kb[:, 2] > b[0]) & (kb[:, 1] < b[3]) & (kb[:, 3] > b[1])
            # The best match, not the first: a piece near two kept neighbours joins the one it
            # overlaps most, so that the neighbour's own view is not left to count twice.
            best, best_iou = -1, -1.0
            for j in np.flatnonzero(overlap):
                other = kept[j]
                if other.key() != piece.key() or piece.tile in other.tiles:
                    continue
                inter = other.shape.intersection(piece.shape).area
                if inter <= 0:
                    continue
                union = other.shape.area + piece.shape.area - inter
                smaller = min(other.shape.area, piece.shape.area)
                doubtful = piece.cut or other.cut or piece.foreign or other.foreign
                if (inter / union >= iou or (doubtful and inter / smaller >= ios)) and inter / union > best_iou:
                    best, best_iou = int(j), inter / union
            if best >= 0:
                other = kept[best]
                if piece.cut and other.cut:
                    other.shape = _join(other, piece)
                    bounds[best] = other.shape.bounds
                other.tiles.add(piece.tile)
                if other.score is None or (piece.score or 0) > other.score:
                    other.score = piece.score if piece.score is not None else other.score
                merged = True
        if not merged:
            bounds[len(kept)] = b
            kept.append(piece)
    return kept


def mosaic_masks(
    grid: TileGrid,
    tile_masks: dict[int, np.ndarray],
    out_shape: tuple[int, int],
    base: np.ndarray | None = None,
) -> np.ndarray:
    """A scene mask of ``out_shape`` (h, w) from tile masks, each written over its tile's core.

    ``tile_masks[i]`` covers tile i's window at any resolution; ``base`` (any
    resolution, e.g. the overview's mask) fills the places no tile was read.
    """
    h, w = out_shape
    sy, sx = h / grid.height, w / grid.width
    if base is not None:
        ys = np.minimum(((np.arange(h) + 0.5) * base.shape[0] / h).astype(int), base.shape[0] - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * base.shape[1] / w).astype(int), base.shape[1] - 1)
        out = base[ys][:, xs].astype(bool)
    else:
        out = np.zeros(out_shape, dtype=bool)
    for index, mask in tile_masks.items():
        tile = grid.tiles[index]
        col, row, tw, th = tile.window
        x0, y0, x1, y1 = tile.core
        # Core in output pixels, and where each output pixel centre falls in the tile mask.
        c0, c1 = round(x0 * sx), round(x1 * sx)
        r0, r1 = round(y0 * sy), round(y1 * sy)
        if c1 <= c0 or r1 <= r0:
            continue
        src_x = ((np.arange(c0, c1) + 0.5) / sx - col) * mask.shape[1] / tw
        src_y = ((np.arange(r0, r1) + 0.5) / sy - row) * mask.shape[0] / th
        src_x = np.clip(src_x.astype(int), 0, mask.shape[1] - 1)
        src_y = np.clip(src_y.astype(int), 0, mask.shape[0] - 1)
        out[r0:r1, c0:c1] = mask[src_y][:, src_x]
    return out


_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:m2|m²|square meters)?\s*\.?\s*$", re.IGNORECASE)
_YES_NO = {"yes": True, "no": False}
_ADDITIVE = re.compile(r"\b(how many|number of|count|area|total|how much)\b", re.IGNORECASE)
_EXISTENTIAL = re.compile(r"^\s*(is|are|does|do)\s+(there|the image|this image)\b", re.IGNORECASE)
_COMPARATIVE = re.compile(r"\b(more|less|fewer|than|larger|smaller|most|least)\b", re.IGNORECASE)


def merge_text(
    task: str | None,
    prompt: str,
    overview_text: str,
    tile_texts: dict[int, str],
    grid: TileGrid,
) -> tuple[str, str]:
    """The merged text answer for non-geometry tasks, and how it was merged.

    Additive questions ("how many…", "what area…") answered with numbers by every
    tile are summed, each tile weighted by the share of its window that it owns
    (so objects in overlaps count once on average); existential yes/no questions
    are "yes" when any tile says yes; anything else keeps the overview's answer.
    """
    if task in ("vqa", None) and tile_texts:
        values = [(_NUMBER.match(t), t.strip().lower().rstrip(".")) for t in tile_texts.values()]
        if all(m for m, _ in values) and _ADDITIVE.search(prompt):
            total = 0.0
            for index, text in tile_texts.items():
                tile = grid.tiles[index]
                x0, y0, x1, y1 = tile.core
                owned = (x1 - x0) * (y1 - y0) / (tile.window[2] * tile.window[3])
                total += float(_NUMBER.match(text).group(1)) * owned
            decimals = any("." in m.group(1) for m, _ in values)
            return (f"{total:.1f}" if decimals else str(int(round(total)))), "sum_over_tiles"
        if (
            all(v in _YES_NO for _, v in values)
            and _EXISTENTIAL.search(prompt)
            and not _COMPARATIVE.search(prompt)
        ):
            return ("yes" if any(_YES_NO[v] for _, v in values) else "no"), "any_tile"
    return overview_text, "overview"


# ----------------------------------------------------------------------- answering


def _tile_geometry(
    answer: Any, tile: Tile, grid: TileGrid, image_size: tuple[int, int]
) -> list[_Piece]:
    """The answer's geometry in source pixels, as pieces."""
    col, row, tw, th = tile.window
    sx, sy = tw / image_size[0], th / image_size[1]
    to_source = [sx, 0, 0, sy, col, row]
    tol = max(2.0 * max(sx, sy), 0.004 * max(tw, th))
    pieces = []
    for kind, items, make in (
        ("box", answer.boxes, lambda it: box(*it["box"])),
        ("obox", answer.obboxes, lambda it: Polygon(it["corners"])),
        ("polygon", answer.polygons, lambda it: shapely.make_valid(Polygon(it["points"]))),
    ):
        for item in items:
            shape = make(item)
            if kind == "polygon" and not isinstance(shape, Polygon):
                shape = shape.convex_hull
            shape = shapely.affinity.affine_transform(shape, to_source)
            if shape.is_empty or (kind != "box" and shape.area <= 0):
                continue
            cx, cy = shape.centroid.x, shape.centroid.y
            x0, y0, x1, y1 = tile.core
            # A centre within ``2 * tol`` of the core's edge is not this tile's to judge either: the
            # neighbour's view of the same object may be centred just across the cut.
            m = 2 * tol
            foreign = tile.index >= 0 and not (
                x0 + (m if x0 > 0 else 0) <= cx <= x1 - (m if x1 < grid.width else 0)
                and y0 + (m if y0 > 0 else 0) <= cy <= y1 - (m if y1 < grid.height else 0)
            )
            cut = _is_cut(shape, tile, grid, tol)
            pieces.append(
                _Piece(kind, shape, item.get("label"), item.get("score"), tile.index, cut, foreign)
            )
    return pieces


def _pieces_to_items(pieces: list[_Piece]) -> tuple[list, list, list]:
    from geoassist.formats import corners_to_obbox

    boxes, oboxes, polygons = [], [], []
    for p in sorted(pieces, key=lambda p: (p.shape.bounds[1], p.shape.bounds[0])):
        tiles = sorted(t for t in p.tiles if t is not None)
        extra = {"source": "overview"} if p.tile is None else {"tiles": tiles}
        if p.kind == "box":
            boxes.append(
                {
                    "label": p.label,
                    "box": [round(v, 2) for v in p.shape.bounds],
                    "score": p.score,
                    **extra,
                }
            )
        elif p.kind == "obox":
            corners = np.asarray(p.shape.exterior.coords)[:4]
            cx, cy, w, h, angle = corners_to_obbox(corners)
            oboxes.append({
                "label": p.label,
                "obox": [round(cx, 2), round(cy, 2), round(w, 2), round(h, 2), round(angle, 2)],
                "corners": np.round(corners, 2).tolist(),
                "score": p.score,
                **extra,
            })  # fmt: skip
        else:
            pts = list(p.shape.exterior.coords)[:-1]
            polygons.append(
                {"label": p.label, "points": [[round(x, 2), round(y, 2)] for x, y in pts], **extra}
            )
    return boxes, oboxes, polygons


def _counts_text(boxes: list, oboxes: list, polygons: list) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    for item in (*boxes, *oboxes, *polygons):
        label = item.get("label") or "object"
        counts[label] = counts.get(label, 0) + 1
    text = "; ".join(f"{label}: {n}" for label, n in counts.items()) if counts else "none"
    return text, counts


def tile_size_px(config: Any, georef: Georef | None, options: TilingOptions) -> int:
    """Tile side in source pixels: the encoder's input at the model's GSD (or 1:1)."""
    size = config.preprocess.image_size
    if options.tile_px is not None:
        return options.tile_px
    model_gsd = config.preprocess.gsd_m
    raster_gsd = georef.gsd_m if georef is not None else None
    if model_gsd and raster_gsd:
        return int(min(max(round(size * model_gsd / raster_gsd), size // 4, 8), 16 * size))
    return size


def needs_tiling(width: int, height: int, tile_px: int, options: TilingOptions) -> bool:
    return max(width, height) > max(options.min_side_px, 2 * tile_px)


def _as_options(tiling: Any, max_tiles: int | None) -> TilingOptions:
    if tiling is None:
        options = TilingOptions()
    elif isinstance(tiling, TilingOptions):
        options = dataclasses.replace(tiling)
    elif isinstance(tiling, dict):
        options = TilingOptions(**tiling)
    else:
        raise GeoAssistError(f"tiling must be TilingOptions or a dict, got {type(tiling).__name__}")
    if max_tiles is not None:
        options = dataclasses.replace(options, max_tiles=int(max_tiles))
    return options


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


_VERSUS = re.compile(r"\b(?:compared|versus|vs|relative|ratio)\b", re.IGNORECASE)
_COUNT_QUESTIONS = [
    re.compile(
        r"^\s*how\s+many\s+(.+?)(?:\s+(?:are|is|were|can|do|does|could)\b.*)?\s*\??\s*$", re.IGNORECASE
    ),
    re.compile(
        r"^\s*(?:what\s+is\s+)?(?:the\s+)?(?:total\s+)?number\s+of\s+(.+?)"
        r"(?:\s+(?:are|is|that|which|visible|present|shown|seen)\b.*)?\s*[?.]?\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*count\s+(?:all\s+)?(.+?)\s*[?.!]?\s*$", re.IGNORECASE),
]


def _count_target(prompt: str) -> str | None:
    """``cars`` for "How many cars are there?", "What is the number of cars?" or "Count the cars".

    None for other questions, and for comparisons ("how many more cars than trucks"),
    which a count of one kind of object does not answer.
    """
    match = next((m for p in _COUNT_QUESTIONS if (m := p.match(prompt.strip()))), None)
    if not match or _COMPARATIVE.search(match.group(1)) or _VERSUS.search(match.group(1)):
        return None
    target = re.sub(r"\b(?:the|in|on|of|this|image|scene|picture|all)\b", " ", match.group(1))
    target = " ".join(target.split())
    return target or None


def _relevance_side(config: Any) -> int:
    vision = config.vision.resolved()
    return 2 * vision.image_size


def _read_fraction(grid: TileGrid, chosen: list[int], valid_fraction: np.ndarray) -> float:
    if not chosen:
        return 0.0
    area = shapely.unary_union([box(*grid.tiles[i].bounds) for i in chosen]).area
    total = float(grid.width * grid.height) * max(float(valid_fraction.mean()), 1e-9)
    return min(1.0, area / total) if total else 0.0


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
