"""What the assistant answered: text plus typed pixel geometry, and its place on the map.

An :class:`Answer` holds its geometry in pixels of the image it is about (the last
image of a pair or series, or the whole of a large scene), built on the answer
grammar's types in :mod:`geoassist.formats`: :class:`AnswerBox`,
:class:`AnswerOBox`, :class:`AnswerPolygon`, and :class:`AnswerMask` (a list, since
one answer can carry several masks). The image's :class:`~geoassist.geo.Georef`
stays on the answer; map and lon/lat coordinates are computed when the answer is
serialised (:meth:`Answer.to_dict`, :meth:`Answer.to_json`,
:meth:`Answer.to_geojson`), so moving an answer to other pixels is one method,
:meth:`Answer.rescaled`, and nothing has to be kept in step.

Geometry items read like the dicts they are written as (``item["label"]``,
``item["box"]``, ``item.get("score")``), so ``answer.boxes`` still reads as a list
of label/box/score entries.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import InitVar, dataclass, field
from typing import Any, ClassVar

import numpy as np
import shapely
from affine import Affine
from shapely.geometry import box as shapely_box

from geoassist import formats
from geoassist.geo import (
    Georef,
    NotGeoreferencedError,
    feature_collection,
    map_fields,
    mask_to_polygons,
    not_georeferenced,
)
from geoassist.rle import mask_to_rle

__all__ = [
    "Answer", "AnswerBox", "AnswerOBox", "AnswerPolygon", "AnswerMask", "AnswerStream",
    "plain_text",
]  # fmt: skip

PIXEL_DECIMALS = 2

# Tags of the answer grammar, of the retrieved-context block and of the chat format: none of
# them is for people, wherever it stands in a finished answer's text.
_MACHINE_TAG = re.compile(
    r"</?\s*(?:passage|context|ref|box|obox|poly|polygon|point|mask|image)\b[^<>]*>"
    r"|<\|im_(?:start|end)\|>|<\|endoftext\|>",
    re.IGNORECASE,
)


def plain_text(text: str) -> str:
    """``text`` without grammar, context or chat tags (a stray ``</passage>`` never ends an answer)."""
    if "<" not in text:
        return text
    cleaned = _MACHINE_TAG.sub(" ", text)
    return "\n".join(" ".join(line.split()) for line in cleaned.split("\n")).strip()


def _r(value: float) -> float:
    return round(float(value), PIXEL_DECIMALS)


class _Readable:
    """Dict-style reading of a geometry item: ``item["box"]``, ``item.get("score")``, ``"tiles" in item``."""

    kind: ClassVar[str]
    tiles: list[int] | None
    source: str | None

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _extra(self) -> dict[str, Any]:
        """Where a large scene's geometry came from: the tiles that saw it, or the overview."""
        if self.source is not None:
            return {"source": self.source}
        return {"tiles": list(self.tiles)} if self.tiles is not None else {}

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.to_dict().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self.to_dict()

    def keys(self) -> list[str]:
        return list(self.to_dict())

    def __eq__(self, other: object) -> bool:
        # Equal to an item of the same kind, or to the dict it is written as.
        if isinstance(other, dict):
            return self.to_dict() == other
        if isinstance(other, _Readable):
            return self.kind == other.kind and self.to_dict() == other.to_dict()
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(eq=False)
class AnswerBox(_Readable, formats.Box):
    """A horizontal box ``(x1, y1, x2, y2)`` in pixels, coordinates kept to 0.01 px."""

    kind: ClassVar[str] = "box"
    tiles: list[int] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.box = tuple(_r(v) for v in self.box)  # type: ignore[assignment]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "box": list(self.box), "score": self.score, **self._extra()}

    def shape(self) -> Any:
        return shapely_box(*self.box)

    def moved(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> AnswerBox:
        x1, y1, x2, y2 = self.box
        return dataclasses.replace(
            self, box=(x1 * sx + dx, y1 * sy + dy, x2 * sx + dx, y2 * sy + dy)
        )


@dataclass(eq=False)
class AnswerOBox(_Readable, formats.OBox):
    """An oriented box (centre, width, height, angle in degrees) in pixels; see FORMATS.md."""

    kind: ClassVar[str] = "obox"
    tiles: list[int] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.cx, self.cy, self.w, self.h, self.angle_deg = (
            _r(v) for v in (self.cx, self.cy, self.w, self.h, self.angle_deg)
        )

    @classmethod
    def from_corners(cls, label: str | None, corners: Any, score: float | None = None,
                     **extra: Any) -> AnswerOBox:  # fmt: skip
        """The minimum-area rectangle around ``corners`` (pixels)."""
        cx, cy, w, h, angle = formats.corners_to_obbox(corners)
        return cls(label, cx, cy, w, h, angle, score, **extra)

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "obox": [self.cx, self.cy, self.w, self.h, self.angle_deg],
            "corners": np.round(self.corners(), PIXEL_DECIMALS).tolist(),
            "score": self.score,
            **self._extra(),
        }

    def shape(self) -> Any:
        return shapely.Polygon(self.corners())

    def moved(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> AnswerOBox:
        if math.isclose(sx, sy, rel_tol=1e-9):
            return dataclasses.replace(
                self, cx=self.cx * sx + dx, cy=self.cy * sy + dy, w=self.w * sx, h=self.h * sy
            )
        # Unequal scales shear the rectangle: keep the smallest rectangle around its corners.
        corners = self.corners() * [sx, sy] + [dx, dy]
        cx, cy, w, h, angle = formats.corners_to_obbox(corners)
        return dataclasses.replace(self, cx=cx, cy=cy, w=w, h=h, angle_deg=angle)


@dataclass(eq=False)
class AnswerPolygon(_Readable, formats.Polygon):
    """A polygon in pixels (not closed)."""

    kind: ClassVar[str] = "polygon"
    tiles: list[int] | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.points = [(_r(x), _r(y)) for x, y in self.points]

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "points": [[x, y] for x, y in self.points], **self._extra()}

    def shape(self) -> Any:
        return shapely.make_valid(shapely.Polygon(self.points))

    def moved(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> AnswerPolygon:
        return dataclasses.replace(
            self, points=[(x * sx + dx, y * sy + dy) for x, y in self.points]
        )


@dataclass
class AnswerMask:
    """A boolean mask; pixel ``(col, row)`` of ``array`` covers image pixels
    ``x = col * scale[0] + offset[0]`` (and likewise y). Scale 1, offset 0: the image's own grid."""

    array: np.ndarray
    label: str | None = None
    scale: tuple[float, float] = (1.0, 1.0)
    offset: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array, dtype=bool)

    @property
    def on_image_grid(self) -> bool:
        return tuple(self.scale) == (1.0, 1.0) and tuple(self.offset) == (0.0, 0.0)

    def to_image(self) -> Affine:
        """Mask pixels → image pixels."""
        return Affine(self.scale[0], 0, self.offset[0], 0, self.scale[1], self.offset[1])

    def moved(self, sx: float, sy: float, dx: float = 0.0, dy: float = 0.0) -> AnswerMask:
        return dataclasses.replace(
            self,
            scale=(self.scale[0] * sx, self.scale[1] * sy),
            offset=(self.offset[0] * sx + dx, self.offset[1] * sy + dy),
        )


def _as_box(item: Any) -> AnswerBox:
    if isinstance(item, AnswerBox):
        return item
    if isinstance(item, formats.Box):
        return AnswerBox(item.label, item.box, item.score)
    return AnswerBox(item.get("label"), tuple(item["box"]), item.get("score"),
                     item.get("tiles"), item.get("source"))  # fmt: skip


def _as_obox(item: Any) -> AnswerOBox:
    if isinstance(item, AnswerOBox):
        return item
    if isinstance(item, formats.OBox):
        return AnswerOBox(item.label, item.cx, item.cy, item.w, item.h, item.angle_deg, item.score)
    extra = {"tiles": item.get("tiles"), "source": item.get("source")}
    if "obox" in item:
        return AnswerOBox(item.get("label"), *item["obox"][:5], item.get("score"), **extra)
    return AnswerOBox.from_corners(item.get("label"), item["corners"], item.get("score"), **extra)


def _as_polygon(item: Any) -> AnswerPolygon:
    if isinstance(item, AnswerPolygon):
        return item
    if isinstance(item, formats.Polygon):
        return AnswerPolygon(item.label, list(item.points))
    return AnswerPolygon(item.get("label"), [tuple(p) for p in item["points"]],
                         item.get("tiles"), item.get("source"))  # fmt: skip


def _as_mask(item: Any) -> AnswerMask:
    return item if isinstance(item, AnswerMask) else AnswerMask(np.asarray(item))


@dataclass
class Answer:
    """What the assistant answered, in text and in structure (see the module docstring).

    ``boxes``, ``obboxes``, ``polygons`` and ``masks`` are in pixels of ``image_size``;
    ``georef`` places them on the map (None: not georeferenced). ``coverage`` says how a
    large scene was read (see :mod:`geoassist.large`); ``stopped`` is True when the request
    was cancelled and the answer is what was generated until then. ``notes`` are short
    sentences for the user about how the answer was made (e.g. history dropped to fit the
    model's context). Items may be given as
    dicts (``{"label", "box", "score"}``…) and ``mask=`` as one array; both become typed.
    """

    text: str
    boxes: list[AnswerBox] = field(default_factory=list)
    obboxes: list[AnswerOBox] = field(default_factory=list)
    polygons: list[AnswerPolygon] = field(default_factory=list)
    masks: list[AnswerMask] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    parse_errors: list[str] = field(default_factory=list)
    raw: str = ""
    task: str | None = None
    image_size: tuple[int, int] | None = None
    georef: Georef | None = None
    history: list[dict[str, str]] = field(default_factory=list, repr=False)
    coverage: dict[str, Any] | None = None
    stopped: bool = False
    notes: list[str] = field(default_factory=list)
    mask: InitVar[np.ndarray | None] = None

    def __post_init__(self, mask: np.ndarray | None) -> None:
        self.boxes = [_as_box(b) for b in self.boxes]
        self.obboxes = [_as_obox(o) for o in self.obboxes]
        self.polygons = [_as_polygon(p) for p in self.polygons]
        self.masks = [_as_mask(m) for m in self.masks]
        # dataclasses.replace passes the current first mask back in as ``mask``: not a new one.
        if isinstance(mask, np.ndarray) and not (self.masks and self.masks[0].array is mask):
            self.masks.insert(0, AnswerMask(mask))
        if self.image_size is not None:
            self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    # ---------------------------------------------------------------- views
    def _get_mask(self) -> np.ndarray | None:
        """The first mask as a boolean array (None without one)."""
        return self.masks[0].array if self.masks else None

    def _set_mask(self, value: np.ndarray | None) -> None:
        self.masks = [] if value is None else [AnswerMask(value), *self.masks[1:]]

    @property
    def geo(self) -> dict[str, Any] | None:
        """The georeference as a dict (``crs``, ``transform``, ``gsd_m``…), or what says there is none.

        None for a text-only answer. A first mask coarser than the image adds its own
        ``mask_transform`` (six GDAL-affine numbers).
        """
        if self.georef is None:
            return not_georeferenced() if self.image_size is not None else None
        info = self.georef.describe()
        if self.masks and not self.masks[0].on_image_grid:
            transform = self.georef.transform @ self.masks[0].to_image()
            info["mask_transform"] = [float(v) for v in list(transform)[:6]]
        return info

    def geometry(self) -> dict[str, list[dict[str, Any]]]:
        """Boxes, oriented boxes and polygons as dicts, with map and lon/lat keys when georeferenced.

        Boxes gain ``box_map``, ``polygon_map`` and (with a CRS) ``polygon_lonlat``,
        ``bbox_lonlat``; oriented boxes ``corners_map``/``corners_lonlat``; polygons
        ``points_map``/``points_lonlat`` (see :func:`geoassist.geo.map_fields`).
        """
        out: dict[str, list[dict[str, Any]]] = {}
        for key, items in (("boxes", self.boxes), ("obboxes", self.obboxes), ("polygons", self.polygons)):  # fmt: skip
            rows = []
            for item in items:
                row = item.to_dict()
                if self.georef is not None:
                    row.update(map_fields(self.georef, item.kind, row))
                rows.append(row)
            out[key] = rows
        return out

    # ------------------------------------------------------------- changing
    def rescaled(
        self,
        sx: float,
        sy: float,
        offset: tuple[float, float] = (0.0, 0.0),
        *,
        image_size: tuple[int, int],
        georef: Georef | None,
    ) -> Answer:
        """A copy whose geometry is in other pixels: ``x' = x * sx + offset[0]`` (likewise y).

        ``image_size`` and ``georef`` describe the image the new pixels belong to.
        """
        dx, dy = offset
        return dataclasses.replace(
            self,
            boxes=[b.moved(sx, sy, dx, dy) for b in self.boxes],
            obboxes=[o.moved(sx, sy, dx, dy) for o in self.obboxes],
            polygons=[p.moved(sx, sy, dx, dy) for p in self.polygons],
            masks=[m.moved(sx, sy, dx, dy) for m in self.masks],
            image_size=tuple(image_size),
            georef=georef,
        )

    # ---------------------------------------------------------- serialising
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: pixel geometry, map coordinates when georeferenced, the mask as COCO RLE.

        ``masks`` (every mask) is added when there is more than one; ``stopped`` when the
        answer was cut short by a cancel.
        """
        geometry = self.geometry()
        out: dict[str, Any] = {
            "text": self.text,
            "task": self.task,
            "image_size": list(self.image_size) if self.image_size else None,
            **geometry,
            "mask": mask_to_rle(self.masks[0].array) if self.masks else None,
            "citations": self.citations,
            "geo": self.geo,
            "coverage": self.coverage,
            "parse_errors": self.parse_errors,
            "raw": self.raw,
        }
        if len(self.masks) > 1:
            out["masks"] = [
                {"label": m.label, "rle": mask_to_rle(m.array), "transform": list(m.to_image())[:6]}
                for m in self.masks
            ]
        if self.stopped:
            out["stopped"] = True
        if self.notes:
            out["notes"] = list(self.notes)
        return out

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def to_geojson(self, crs: str = "EPSG:4326") -> dict[str, Any]:
        """The geometry as a GeoJSON FeatureCollection (lon/lat; ``crs="native"``: the image's CRS).

        One feature per box, oriented box and polygon, and each mask vectorised, with
        ``kind``, ``label``, ``score`` and the pixel geometry in the properties. Raises
        :class:`~geoassist.geo.NotGeoreferencedError` for images without georeferencing
        (or, for lon/lat, without a CRS).
        """
        if self.georef is None:
            raise NotGeoreferencedError(not_georeferenced()["note"])
        features: list[tuple[str, Any, dict[str, Any], Georef | None]] = []
        for b in self.boxes:
            props = {"label": b.label, "score": b.score, "box_px": list(b.box), **b._extra()}
            features.append(("box", b.shape(), props, None))
        for o in self.obboxes:
            props = {"label": o.label, "score": o.score, "obox_px": o["obox"], **o._extra()}
            features.append(("obox", o.shape(), props, None))
        for p in self.polygons:
            if len(p.points) >= 3:
                props = {"label": p.label, "points_px": p["points"], **p._extra()}
                features.append(("polygon", p.shape(), props, None))
        for m in self.masks:
            parts = mask_to_polygons(m.array, Affine.identity())
            if parts:
                own = None if m.on_image_grid else Georef(
                    self.georef.transform @ m.to_image(), self.georef.crs
                )  # fmt: skip
                props = {"label": m.label or self.task, "area_px": int(m.array.sum())}
                features.append(("mask", shapely.unary_union(parts), props, own))
        properties: dict[str, Any] = {
            "task": self.task,
            "text": self.text,
            "image_size": list(self.image_size) if self.image_size else None,
            "source_crs": self.geo.get("crs") if self.geo else None,
        }
        if self.coverage:
            properties["coverage"] = {
                k: self.coverage[k]
                for k in ("complete", "tiles_read", "tiles_total", "note")
                if k in self.coverage
            }
        return feature_collection(self.georef, features, crs=crs, properties=properties)


# ``mask`` is both a constructor argument (one array) and a view of the first mask.
Answer.mask = property(Answer._get_mask, Answer._set_mask)  # type: ignore[assignment]


class AnswerStream:
    """Iterate to receive the answer's text as it is generated; ``.answer`` holds the result afterwards."""

    def __init__(self, chunks: Any):
        self._chunks = chunks
        self.answer: Answer | None = None

    def __iter__(self):
        yield from self._chunks

    @classmethod
    def of(cls, answer: Answer) -> AnswerStream:
        """A stream of one piece for an answer that is already complete."""
        stream = cls(iter([answer.text]))
        stream.answer = answer
        return stream
