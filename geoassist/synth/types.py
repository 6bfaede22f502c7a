"""Typed ground truth for GeoSynth scenes, pairs and series.

Coordinates are pixel coordinates of the image: ``x`` to the right, ``y`` down,
the top-left corner of the top-left pixel at (0, 0). Horizontal boxes are
``[x1, y1, x2, y2]`` floats with no +1 term (IoU-ready); oriented boxes are
``(cx, cy, w, h, angle_deg)`` with the angle of the ``w`` side measured from
the x axis towards y, plus their four corners.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from geoassist.errors import GeoAssistError
from geoassist.synth.palette import ms_to_rgb


class SynthError(GeoAssistError, ValueError):
    """A GeoSynth request cannot be carried out (unknown kind, format or class)."""


class FormatKindError(SynthError):
    """An export format does not fit the kind of sample (e.g. LEVIR-CD for single images)."""


@dataclass
class OrientedBox:
    cx: float
    cy: float
    w: float
    h: float
    angle_deg: float

    def corners(self) -> list[tuple[float, float]]:
        """The four corners, clockwise on screen, starting at the (-w/2, -h/2) corner."""
        a = math.radians(self.angle_deg)
        ca, sa = math.cos(a), math.sin(a)
        out = []
        for dx, dy in ((-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)):
            x, y = dx * self.w, dy * self.h
            out.append((self.cx + x * ca - y * sa, self.cy + x * sa + y * ca))
        return out

    def as_tuple(self) -> tuple[float, float, float, float, float]:
        return (self.cx, self.cy, self.w, self.h, self.angle_deg)


@dataclass
class SynthObject:
    """One annotated object (or land-cover region) of a scene.

    ``polygon`` is the exact outline in pixels; ``mask`` is its rasterisation
    inside ``box`` (a boolean array of shape ``(ceil(y2)-floor(y1), ceil(x2)-floor(x1))``
    placed at ``mask_origin``). ``attributes`` carries colour, size in m²,
    orientation and class-specific facts (roof type, height in m…).
    """

    id: int
    cls: str
    polygon: list[tuple[float, float]]
    box: list[float]
    obox: OrientedBox
    attributes: dict[str, Any] = field(default_factory=dict)
    mask: np.ndarray | None = field(default=None, repr=False)
    mask_origin: tuple[int, int] = (0, 0)
    is_region: bool = False  # land-cover areas (water area, forest…) rather than things

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2)

    @property
    def area_px(self) -> int:
        return int(self.mask.sum()) if self.mask is not None else 0

    def full_mask(self, height: int, width: int) -> np.ndarray:
        """The instance mask at full image size."""
        out = np.zeros((height, width), bool)
        if self.mask is None:
            return out
        x0, y0 = self.mask_origin
        h, w = self.mask.shape
        out[y0 : y0 + h, x0 : x0 + w] = self.mask
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.cls,
            "box": [round(v, 2) for v in self.box],
            "obox": [round(v, 2) for v in self.obox.as_tuple()],
            "obox_corners": [[round(x, 2), round(y, 2)] for x, y in self.obox.corners()],
            "polygon": [[round(x, 2), round(y, 2)] for x, y in self.polygon],
            "attributes": self.attributes,
            "is_region": self.is_region,
        }


@dataclass
class Relation:
    subject: int
    predicate: str  # "left_of", "right_of", "above", "below", "near", "inside"
    object: int


@dataclass
class QA:
    question: str
    answer: str
    type: str  # RSVQA names: presence, comp, count, area, rural_urban (+ change types)


@dataclass
class ReferringExpression:
    text: str
    object_id: int
    box: list[float]
    spec: dict[str, Any] = field(default_factory=dict)  # what the text says, for re-checking uniqueness


@dataclass
class RegionCaption:
    object_id: int
    box: list[float]
    text: str


@dataclass
class SceneAnnotation:
    """Everything known about one scene, exact by construction."""

    scene_id: str
    seed: int
    kind: str  # "hr" or "ms"
    scene_class: str
    rural_urban: str
    gsd_m: float
    sensor: str
    width: int
    height: int
    band_names: list[str]
    crs: str
    geotransform: tuple[float, float, float, float, float, float]  # GDAL order
    sun_azimuth_deg: float
    sun_elevation_deg: float
    season: str
    objects: list[SynthObject] = field(default_factory=list)
    relations: list[Relation] = field(default_factory=list)
    semantic_mask: np.ndarray | None = field(default=None, repr=False)
    semantic_classes: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    vqa: list[QA] = field(default_factory=list)
    referring: list[ReferringExpression] = field(default_factory=list)
    region_captions: list[RegionCaption] = field(default_factory=list)

    def things(self) -> list[SynthObject]:
        return [o for o in self.objects if not o.is_region]

    def by_class(self, cls: str) -> list[SynthObject]:
        return [o for o in self.objects if o.cls == cls]

    def object(self, object_id: int) -> SynthObject:
        for o in self.objects:
            if o.id == object_id:
                return o
        raise KeyError(object_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene_id": self.scene_id,
            "seed": self.seed,
            "kind": self.kind,
            "scene_class": self.scene_class,
            "rural_urban": self.rural_urban,
            "gsd_m": self.gsd_m,
            "sensor": self.sensor,
            "width": self.width,
            "height": self.height,
            "band_names": self.band_names,
            "crs": self.crs,
            "geotransform": list(self.geotransform),
            "sun_azimuth_deg": self.sun_azimuth_deg,
            "sun_elevation_deg": self.sun_elevation_deg,
            "season": self.season,
            "semantic_classes": self.semantic_classes,
            "objects": [o.to_dict() for o in self.objects],
            "relations": [asdict(r) for r in self.relations],
            "captions": self.captions,
            "vqa": [asdict(q) for q in self.vqa],
            "referring": [asdict(r) for r in self.referring],
            "region_captions": [asdict(r) for r in self.region_captions],
        }


@dataclass
class Change:
    """One real change between two dates, in the first date's pixel frame."""

    kind: str  # building_built, building_demolished, forest_cleared, flooding, new_road, crop_change
    cls: str
    polygon: list[tuple[float, float]]
    box: list[float]
    before: str
    after: str
    mask: np.ndarray | None = field(default=None, repr=False)
    mask_origin: tuple[int, int] = (0, 0)
    t: int = 1  # the date at which the change is first seen

    def full_mask(self, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        if self.mask is not None:
            x0, y0 = self.mask_origin
            h, w = self.mask.shape
            out[y0 : y0 + h, x0 : x0 + w] = self.mask
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "class": self.cls,
            "box": [round(v, 2) for v in self.box],
            "polygon": [[round(x, 2), round(y, 2)] for x, y in self.polygon],
            "before": self.before,
            "after": self.after,
            "t": self.t,
        }


@dataclass
class PairAnnotation:
    """A bi-temporal pair (or the first and last date of a series)."""

    pair_id: str
    seed: int
    scenes: list[SceneAnnotation]  # one per date
    changes: list[Change]
    change_mask: np.ndarray | None = field(default=None, repr=False)
    shifts_px: list[tuple[int, int]] = field(default_factory=list)  # misregistration per date
    change_captions: list[str] = field(default_factory=list)
    change_qa: list[QA] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pair_id": self.pair_id,
            "seed": self.seed,
            "dates": [s.to_dict() for s in self.scenes],
            "changes": [c.to_dict() for c in self.changes],
            "shifts_px": [list(s) for s in self.shifts_px],
            "change_captions": self.change_captions,
            "change_qa": [asdict(q) for q in self.change_qa],
        }


@dataclass
class Scene:
    """A generated image (H×W×C uint8 RGB for HR, uint16 13-band for MS) and its truth."""

    image: np.ndarray
    annotation: SceneAnnotation

    @property
    def rgb(self) -> np.ndarray:
        """An 8-bit RGB view for PNG/JPEG exports and previews."""
        if self.image.dtype == np.uint8:
            return self.image[..., :3]
        return ms_to_rgb(self.image)


@dataclass
class Pair:
    images: list[np.ndarray]  # one per date
    annotation: PairAnnotation

    def scene(self, t: int) -> Scene:
        return Scene(self.images[t], self.annotation.scenes[t])
