"""Pixel ↔ map ↔ lon/lat, answers as geometry on the map, and GeoJSON out.

Pixel positions follow GDAL and :mod:`geoassist.io`: ``(x, y) = (column, row)``
with ``(0, 0)`` at the top-left *corner* of the top-left pixel, so the centre of
pixel ``(col, row)`` is ``(col + 0.5, row + 0.5)`` and a box ``[x1, y1, x2, y2]``
(no +1 term) covers exactly the pixels it names. A :class:`Georef` is the
raster's affine geotransform plus its CRS; map coordinates are in that CRS,
lon/lat in WGS84 (EPSG:4326) in longitude, latitude order, as GeoJSON wants.

An image without a geotransform has no map coordinates: ``Answer.geo`` says so
(:func:`not_georeferenced`) and GeoJSON output raises :class:`NotGeoreferencedError`
instead of inventing coordinates. An image with a
geotransform but no CRS (a world file without a ``.prj``) has map coordinates but
no lon/lat.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Polygon, box, mapping
from shapely.geometry.polygon import orient

from geoassist.errors import GeoAssistError

__all__ = [
    "WGS84",
    "Georef",
    "NotGeoreferencedError",
    "answer_to_geojson",
    "feature_collection",
    "map_fields",
    "mask_to_polygons",
    "not_georeferenced",
    "write_geojson",
]

WGS84 = CRS.from_epsg(4326)
LONLAT_DECIMALS = 7  # about 1 cm on the ground
MAP_DECIMALS = 3
DENSIFY_MAP_UNITS = 1000.0
"""Edges longer than this (in map units) get extra vertices before going to lon/lat, where
straight map edges become curves; short edges (any single object) are left as they are."""


class NotGeoreferencedError(GeoAssistError, ValueError):
    """An operation needs map coordinates but the image has no georeferencing (or no CRS)."""


@functools.lru_cache(maxsize=64)
def _transformer(src_wkt: str, dst_wkt: str):
    from pyproj import Transformer

    return Transformer.from_crs(src_wkt, dst_wkt, always_xy=True)


def _crs(value: Any) -> CRS | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, CRS) else CRS.from_user_input(value)


@dataclass(frozen=True)
class Georef:
    """Where a raster lies: ``transform`` maps pixel (x, y) to map coordinates in ``crs``.

    ``width``/``height`` (pixels) are optional; they are needed only for bounds.
    """

    transform: Affine
    crs: CRS | None = None
    width: int | None = None
    height: int | None = None

    # ------------------------------------------------------------- builders
    @classmethod
    def from_image(cls, image: Any) -> Georef | None:
        """The georeference of an :class:`~geoassist.io.Image` or ``ImageInfo``, or None."""
        if getattr(image, "transform", None) is None:
            return None
        return cls(image.transform, _crs(image.crs), image.width, image.height)

    @classmethod
    def from_dataset(cls, ds: Any) -> Georef | None:
        """The georeference of an open rasterio dataset (None when it has no geotransform)."""
        crs = ds.crs if ds.crs else None
        if crs is None and ds.transform.is_identity:
            return None
        return cls(ds.transform, crs, ds.width, ds.height)

    @classmethod
    def from_dict(cls, geo: dict[str, Any]) -> Georef:
        """From ``Answer.geo`` (``transform`` as six GDAL-affine numbers a, b, c, d, e, f)."""
        if not geo or not geo.get("georeferenced", "transform" in (geo or {})):
            raise NotGeoreferencedError(_NOT_GEOREFERENCED)
        size = geo.get("image_size") or (None, None)
        return cls(Affine(*geo["transform"][:6]), _crs(geo.get("crs")), size[0], size[1])

    # ---------------------------------------------------------- conversions
    @property
    def has_lonlat(self) -> bool:
        return self.crs is not None

    def pixel_to_map(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of pixel positions (scalars or arrays)."""
        t = self.transform
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f

    def map_to_pixel(self, mx: Any, my: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fractional pixel positions of map coordinates (the inverse of :meth:`pixel_to_map`)."""
        inv = ~self.transform
        mx, my = np.asarray(mx, dtype=float), np.asarray(my, dtype=float)
        return inv.a * mx + inv.b * my + inv.c, inv.d * mx + inv.e * my + inv.f

    def map_to_lonlat(self, mx: Any, my: Any) -> tuple[np.ndarray, np.ndarray]:
        tr = _transformer(self._require_crs().to_wkt(), WGS84.to_wkt())
        lon, lat = tr.transform(np.asarray(mx, dtype=float), np.asarray(my, dtype=float))
        return np.asarray(lon), np.asarray(lat)

    def lonlat_to_map(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        tr = _transformer(WGS84.to_wkt(), self._require_crs().to_wkt())
        mx, my = tr.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
        return np.asarray(mx), np.asarray(my)

    def pixel_to_lonlat(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.map_to_lonlat(*self.pixel_to_map(x, y))

    def lonlat_to_pixel(self, lon: Any, lat: Any) -> tuple[np.ndarray, np.ndarray]:
        return self.map_to_pixel(*self.lonlat_to_map(lon, lat))

    # ------------------------------------------------------- derived georefs
    def window(
        self, col_off: float, row_off: float, width: int | None = None, height: int | None = None
    ) -> Georef:
        """The georeference of a window whose top-left pixel is ``(col_off, row_off)``."""
        return Georef(
            self.transform @ Affine.translation(col_off, row_off), self.crs, width, height
        )

    def scaled(
        self,
        factor_x: float,
        factor_y: float | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> Georef:
        """The georeference of a resampled copy whose pixels are ``factor`` source pixels wide."""
        factor_y = factor_x if factor_y is None else factor_y
        return Georef(self.transform @ Affine.scale(factor_x, factor_y), self.crs, width, height)

    # ------------------------------------------------------------ measures
    @property
    def pixel_size(self) -> tuple[float, float]:
        """Width and height of one pixel in map units (positive)."""
        t = self.transform
        return math.hypot(t.a, t.d), math.hypot(t.b, t.e)

    @property
    def gsd_m(self) -> float | None:
        """Ground sample distance in metres (mean of the pixel's width and height), if known.

        Projected CRSs use their linear unit; geographic ones measure one pixel on
        the WGS84 ellipsoid at the raster's centre (or at the origin without a size).
        """
        if self.crs is None:
            return None
        px, py = self.pixel_size
        if self.crs.is_projected:
            factor = self.crs.linear_units_factor[1]
            return (px + py) / 2 * factor
        from pyproj import Geod

        cx = (self.width or 0) / 2
        cy = (self.height or 0) / 2
        lon, lat = self.pixel_to_lonlat(np.array([cx, cx + 1, cx]), np.array([cy, cy, cy + 1]))
        geod = Geod(ellps="WGS84")
        _, _, dx = geod.inv(lon[0], lat[0], lon[1], lat[1])
        _, _, dy = geod.inv(lon[0], lat[0], lon[2], lat[2])
        return (abs(dx) + abs(dy)) / 2

    def bounds(self) -> tuple[float, float, float, float]:
        """(min x, min y, max x, max y) of the raster in map units."""
        x, y = self.pixel_to_map(*self._corners())
        return float(x.min()), float(y.min()), float(x.max()), float(y.max())

    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the raster, from its densified outline."""
        w, h = self._size()
        outline = self.geometry_to_lonlat(box(0, 0, w, h))
        return tuple(float(v) for v in outline.bounds)  # type: ignore[return-value]

    # ------------------------------------------------------------ geometry
    def geometry_to_map(self, geom: Any) -> Any:
        """A shapely geometry in pixel positions, moved to map coordinates."""
        t = self.transform
        return shapely.affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])

    def geometry_to_lonlat(self, geom: Any, densify: float | None = DENSIFY_MAP_UNITS) -> Any:
        """A shapely geometry in pixel positions, moved to WGS84 lon/lat."""
        in_map = self.geometry_to_map(geom)
        if densify and self.crs is not None and self.crs.is_projected:
            in_map = shapely.segmentize(in_map, densify)
        tr = _transformer(self._require_crs().to_wkt(), WGS84.to_wkt())
        return shapely.transform(
            in_map, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1]))
        )

    def describe(self) -> dict[str, Any]:
        """What ``Answer.geo`` holds for a georeferenced image."""
        info: dict[str, Any] = {
            "georeferenced": True,
            "crs": _crs_text(self.crs),
            "transform": [float(v) for v in list(self.transform)[:6]],
            "lonlat": self.has_lonlat,
        }
        if self.width and self.height:
            info["image_size"] = [int(self.width), int(self.height)]
            if self.has_lonlat:
                info["bounds_lonlat"] = [round(v, LONLAT_DECIMALS) for v in self.lonlat_bounds()]
        gsd = self.gsd_m
        if gsd is not None:
            info["gsd_m"] = round(gsd, 4)
        if not self.has_lonlat:
            info["note"] = (
                "the image has a geotransform but no CRS, so map coordinates are in unknown units "
                "and lon/lat cannot be computed; add a .prj beside a world file or assign a CRS"
            )
        return info

    # ------------------------------------------------------------- helpers
    def _require_crs(self) -> CRS:
        if self.crs is None:
            raise NotGeoreferencedError(
                "the image has a geotransform but no CRS, so lon/lat cannot be computed; "
                "assign a CRS (e.g. a .prj beside the world file, or rasterio's crs=)"
            )
        return self.crs

    def _size(self) -> tuple[int, int]:
        if self.width is None or self.height is None:
            raise ValueError("this Georef has no width/height; build it with width= and height=")
        return self.width, self.height

    def _corners(self) -> tuple[np.ndarray, np.ndarray]:
        w, h = self._size()
        return np.array([0, w, w, 0], dtype=float), np.array([0, 0, h, h], dtype=float)


def _crs_text(crs: CRS | None) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg is not None else crs.to_wkt()


_NOT_GEOREFERENCED = (
    "the image is not georeferenced (no geotransform), so its answers have pixel coordinates only; "
    "pass a GeoTIFF/JPEG 2000/ENVI file with georeferencing, or a PNG/JPEG with a world file "
    "(.pgw/.jgw/.wld) and a .prj beside it"
)


def not_georeferenced() -> dict[str, Any]:
    """What ``Answer.geo`` holds for an image without georeferencing."""
    return {"georeferenced": False, "note": _NOT_GEOREFERENCED}


# ------------------------------------------------------------------ answers


def _ring(points: Any) -> Polygon:
    return Polygon([(float(x), float(y)) for x, y in points])


def _rounded(coords: Any, decimals: int) -> list[list[float]]:
    return [[round(float(x), decimals), round(float(y), decimals)] for x, y in coords]


def _exterior(geom: Polygon) -> list[tuple[float, float]]:
    return list(geom.exterior.coords)[:-1]


def map_fields(georef: Georef, kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """The map and lon/lat coordinates of one pixel geometry (a new dict; ``item`` is not changed).

    ``kind`` is ``box`` (``item["box"]``), ``obox`` (``item["corners"]``) or ``polygon``
    (``item["points"]``). Boxes get ``box_map`` (min x, min y, max x, max y in the CRS),
    ``polygon_map`` (the four corners) and, with a CRS, ``polygon_lonlat`` and
    ``bbox_lonlat``; oriented boxes get ``corners_map``/``corners_lonlat``; polygons
    ``points_map``/``points_lonlat``.
    """
    lonlat = georef.has_lonlat
    out: dict[str, Any] = {}
    if kind == "box":
        shape = box(*item["box"])
        in_map = georef.geometry_to_map(shape)
        out["box_map"] = [round(v, MAP_DECIMALS) for v in in_map.bounds]
        out["polygon_map"] = _rounded(_exterior(in_map), MAP_DECIMALS)
        if lonlat:
            ll = georef.geometry_to_lonlat(shape)
            out["polygon_lonlat"] = _rounded(_exterior(ll), LONLAT_DECIMALS)
            out["bbox_lonlat"] = [round(v, LONLAT_DECIMALS) for v in ll.bounds]
    elif kind == "obox":
        shape = _ring(item["corners"])
        out["corners_map"] = _rounded(_exterior(georef.geometry_to_map(shape)), MAP_DECIMALS)
        if lonlat:
            out["corners_lonlat"] = _rounded(
                _exterior(georef.geometry_to_lonlat(shape)), LONLAT_DECIMALS
            )
    elif kind == "polygon":
        pts = np.asarray(item["points"], dtype=float).reshape(-1, 2)
        xs, ys = georef.pixel_to_map(pts[:, 0], pts[:, 1])
        out["points_map"] = _rounded(np.column_stack([xs, ys]), MAP_DECIMALS)
        if lonlat:
            lon, lat = georef.map_to_lonlat(xs, ys)
            out["points_lonlat"] = _rounded(np.column_stack([lon, lat]), LONLAT_DECIMALS)
    else:
        raise ValueError(f"unknown geometry kind {kind!r}; expected box, obox or polygon")
    return out


def mask_to_polygons(mask: np.ndarray, transform: Affine) -> list[Any]:
    """The True areas of a boolean mask as shapely polygons in the coordinates ``transform`` gives."""
    from rasterio import features

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return []
    shapes = features.shapes(mask.astype(np.uint8), mask=mask, transform=transform, connectivity=4)
    return [shapely.geometry.shape(geom) for geom, value in shapes if value == 1]


def feature_collection(
    georef: Georef,
    features: list[tuple[str, Any, dict[str, Any], Georef | None]],
    *,
    crs: str = "EPSG:4326",
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of pixel geometries placed on the map by ``georef``.

    Each feature is ``(kind, shapely geometry in pixels, properties, own georef or None)``;
    a feature's own georef (a mask coarser than the image) replaces ``georef`` for it.
    ``crs="EPSG:4326"`` (the default, RFC 7946) writes lon/lat; ``crs="native"`` writes the
    raster's own CRS and names it in a ``crs`` member (the pre-RFC convention GDAL and QGIS
    read). Exterior rings run counter-clockwise. Raises :class:`NotGeoreferencedError` for
    lon/lat without a CRS.
    """
    native = crs == "native"
    if not native:
        if _crs(crs) != WGS84:
            raise GeoAssistError(
                f"GeoJSON is written in lon/lat (crs='EPSG:4326') or in the raster's CRS "
                f"(crs='native'), not {crs!r}"
            )
        georef._require_crs()
    decimals = MAP_DECIMALS if native else LONLAT_DECIMALS
    out: list[dict[str, Any]] = []
    for kind, shape, props, own in features:
        ref = own or georef
        placed = ref.geometry_to_map(shape) if native else ref.geometry_to_lonlat(shape)
        placed = _ccw(shapely.set_precision(placed, 10.0 ** (-decimals)))
        out.append(
            {"type": "Feature", "geometry": mapping(placed), "properties": {"kind": kind, **props}}
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": out}
    if native:
        collection["crs"] = {"type": "name", "properties": {"name": _ogc_urn(georef.crs)}}
    if properties is not None:
        collection["properties"] = properties
    return collection


def answer_to_geojson(answer: Any, *, crs: str = "EPSG:4326") -> dict[str, Any]:
    """``answer.to_geojson(crs=crs)``: see :meth:`geoassist.answer.Answer.to_geojson`."""
    return answer.to_geojson(crs=crs)


def _ccw(geom: Any) -> Any:
    """Exterior rings counter-clockwise, holes clockwise (RFC 7946)."""
    if isinstance(geom, Polygon):
        return orient(geom, 1.0)
    if isinstance(geom, shapely.MultiPolygon):
        return shapely.MultiPolygon([orient(g, 1.0) for g in geom.geoms])
    return geom


def _ogc_urn(crs: CRS | None) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg is not None else crs.to_wkt()


def write_geojson(answer: Any, path: Any, *, crs: str = "EPSG:4326") -> None:
    """Write ``answer.to_geojson(crs=crs)`` to ``path`` (UTF-8, atomically replaced)."""
    from geoassist.atomic import replace_file

    replace_file(path, json.dumps(answer.to_geojson(crs=crs), ensure_ascii=False, indent=1) + "\n")
