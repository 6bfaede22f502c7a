"""Turn an :class:`~geoassist.assistant.Answer` into what the app draws and offers for download.

Everything here is plain numpy/Pillow so it can be tested with hand-made answers:

- :func:`build_overlay` — the display image with label tags, and one translucent
  annotation layer per label (boxes, oriented boxes and polygons as outlines over a
  light fill, masks as a translucent area) in the form ``gr.AnnotatedImage`` takes;
- :func:`flatten` — the same drawing burnt into one PNG for reports;
- :func:`geometry_rows` — one table row per geometry, with its lon/lat when the
  image is georeferenced;
- :func:`answer_geojson` — the answer as GeoJSON, or ``None`` without georeferencing.

Answer geometry is in pixels of the original image; the display image is a
downscaled quicklook, so every function takes the ``scale`` from one to the other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont

# Bright, distinguishable on vegetation, water, soil and roofs; ordered so the first few
# labels of an answer stay apart for colour-blind readers.
PALETTE = (
    "#ffb000",  # amber
    "#00c8ff",  # sky
    "#ff3d8b",  # magenta
    "#7dff3a",  # lime
    "#b48cff",  # violet
    "#ff6a00",  # orange
    "#00ffc8",  # aqua
    "#fff200",  # yellow
)
REGION_COLOR = "#ffffff"
OUTLINE_ALPHA = 1.0
FILL_ALPHA = 0.16
MASK_ALPHA = 0.45
UNLABELLED = "object"


@dataclass
class Overlay:
    """What the app shows: the base image plus one ``(alpha mask, label)`` layer per label."""

    image: np.ndarray  # H×W×3 uint8, the display image with label tags drawn on it
    layers: list[tuple[np.ndarray, str]] = field(default_factory=list)  # H×W float in [0, 1]
    color_map: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def annotated_value(self) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
        """The value ``gr.AnnotatedImage`` takes."""
        return self.image, self.layers


def _hex_rgb(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return int(color[0:2], 16), int(color[2:4], 16), int(color[4:6], 16)


def color_for(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _label(item: dict[str, Any]) -> str:
    label = str(item.get("label") or "").strip()
    return label or UNLABELLED


def _line_width(size: tuple[int, int]) -> int:
    return max(2, round(max(size) / 300))


def _font(size_px: int) -> PIL.ImageFont.ImageFont:
    try:
        return PIL.ImageFont.load_default(size=size_px)
    except TypeError:  # Pillow built without FreeType
        return PIL.ImageFont.load_default()


def _scaled(points: Sequence[Sequence[float]], scale: float) -> list[tuple[float, float]]:
    return [(float(x) * scale, float(y) * scale) for x, y in points]


def _box_corners(box: Sequence[float]) -> list[tuple[float, float]]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]


def answer_shapes(answer: Any) -> list[tuple[str, str, list[tuple[float, float]]]]:
    """``(kind, label, ring in original pixels)`` for every box, oriented box and polygon."""
    shapes: list[tuple[str, str, list[tuple[float, float]]]] = []
    for item in getattr(answer, "boxes", None) or []:
        shapes.append(("box", _label(item), _box_corners(item["box"])))
    for item in getattr(answer, "obboxes", None) or []:
        shapes.append(("obox", _label(item), [tuple(map(float, p)) for p in item["corners"]]))
    for item in getattr(answer, "polygons", None) or []:
        points = [tuple(map(float, p)) for p in item.get("points") or []]
        if len(points) >= 2:
            shapes.append(("polygon", _label(item), points))
    return shapes


def mask_label(answer: Any) -> str:
    """The legend entry of an answer's mask: what was asked for, when the history says."""
    for message in reversed(getattr(answer, "history", None) or []):
        if message.get("role") == "user":
            text = message.get("content", "").replace("<image>", "").strip()
            if text.startswith("[segment]"):
                asked = text.removeprefix("[segment]").strip()
                if asked:
                    return asked[:40]
            break
    return "mask"


def _resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    img = PIL.Image.fromarray(mask.astype(np.uint8) * 255).resize(size, PIL.Image.NEAREST)
    return np.asarray(img) > 127


def build_overlay(
    rgb: np.ndarray,
    answer: Any | None,
    *,
    scale: float = 1.0,
    region: Sequence[float] | None = None,
    tags: bool = True,
) -> Overlay:
    """Layers for ``answer`` drawn over ``rgb`` (the display image, ``scale`` × the original).

    ``region`` (original pixels) is drawn as a white outline, the way the user marked it.
    ``tags`` writes each shape's label beside it on the base image. An answer without
    geometry (or ``None``) gives the plain image with no layers.
    """
    base = PIL.Image.fromarray(np.asarray(rgb, dtype=np.uint8)).convert("RGB")
    size = base.size
    width = _line_width(size)
    by_label: dict[str, list[tuple[str, list[tuple[float, float]]]]] = {}
    for kind, label, ring in answer_shapes(answer) if answer is not None else []:
        by_label.setdefault(label, []).append((kind, _scaled(ring, scale)))
    overlay = Overlay(image=np.asarray(base))
    tag_draws: list[tuple[str, str, tuple[float, float]]] = []
    for index, (label, shapes) in enumerate(by_label.items()):
        color = color_for(index)
        outline = PIL.Image.new("L", size, 0)
        fill = PIL.Image.new("L", size, 0)
        draw_outline, draw_fill = PIL.ImageDraw.Draw(outline), PIL.ImageDraw.Draw(fill)
        for kind, ring in shapes:
            if kind == "polygon" and len(ring) == 2:
                draw_outline.line(ring, fill=255, width=width)
                continue
            draw_fill.polygon(ring, fill=255)
            draw_outline.line([*ring, ring[0]], fill=255, width=width, joint="curve")
            top = min(ring, key=lambda p: (p[1], p[0]))
            tag_draws.append((label, color, top))
        alpha = np.maximum(
            np.asarray(outline, dtype=np.float32) / 255 * OUTLINE_ALPHA,
            np.asarray(fill, dtype=np.float32) / 255 * FILL_ALPHA,
        )
        legend = f"{label} ({len(shapes)})"
        overlay.layers.append((alpha, legend))
        overlay.color_map[legend] = color
        overlay.counts[label] = len(shapes)
    mask = getattr(answer, "mask", None) if answer is not None else None
    if mask is not None and np.asarray(mask).any():
        area = _resize_mask(mask, size).astype(np.float32)
        name = mask_label(answer)
        legend = name if name == "mask" else f"{name} (mask)"
        overlay.layers.append((area * MASK_ALPHA, legend))
        overlay.color_map[legend] = color_for(len(by_label))
    if region is not None:
        ring = _scaled(_box_corners(region), scale)
        frame = PIL.Image.new("L", size, 0)
        PIL.ImageDraw.Draw(frame).line([*ring, ring[0]], fill=255, width=width)
        overlay.layers.append((np.asarray(frame, dtype=np.float32) / 255, "your region"))
        overlay.color_map["your region"] = REGION_COLOR
    if tags and tag_draws:
        overlay.image = _draw_tags(base, tag_draws)
    return overlay


def _draw_tags(
    base: PIL.Image.Image, tags: list[tuple[str, str, tuple[float, float]]]
) -> np.ndarray:
    """Small coloured label tags above each shape's top corner, kept inside the image."""
    out = base.copy()
    draw = PIL.ImageDraw.Draw(out)
    font = _font(max(11, round(max(out.size) / 48)))
    taken: list[tuple[float, float, float, float]] = []
    for label, color, (x, y) in tags:
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        w, h = right - left + 6, bottom - top + 4
        tx = min(max(0.0, x), out.width - w)
        ty = y - h - 1 if y - h - 1 >= 0 else y + 1
        ty = min(max(0.0, ty), out.height - h)
        rect = (tx, ty, tx + w, ty + h)
        # Skip a tag that would cover one already drawn: the legend still names the label.
        if any(
            not (rect[2] <= a or rect[0] >= c or rect[3] <= b or rect[1] >= d)
            for a, b, c, d in taken
        ):
            continue
        taken.append(rect)
        draw.rectangle(rect, fill=_hex_rgb(color))
        draw.text((tx + 3 - left, ty + 2 - top), label, fill=(0, 0, 0), font=font)
    return np.asarray(out)


def flatten(overlay: Overlay) -> PIL.Image.Image:
    """The overlay burnt into one RGB image (each layer alpha-blended in its colour)."""
    out = np.asarray(overlay.image, dtype=np.float32).copy()
    for alpha, legend in overlay.layers:
        color = np.array(_hex_rgb(overlay.color_map.get(legend, PALETTE[0])), dtype=np.float32)
        a = np.clip(alpha, 0, 1)[:, :, None]
        out = out * (1 - a) + color * a
    return PIL.Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


# ------------------------------------------------------------------ tables and GeoJSON

GEOMETRY_HEADERS = ["#", "label", "kind", "pixels x1, y1, x2, y2", "centre lon, lat"]


def _bounds(points: Sequence[Sequence[float]]) -> list[float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def _centre(points: Sequence[Sequence[float]] | None) -> tuple[float, float] | None:
    if not points:
        return None
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return sum(xs) / len(xs), sum(ys) / len(ys)


def geometry_rows(answer: Any) -> list[list[Any]]:
    """One row per geometry: number, label, kind, pixel bounds, centre lon/lat (blank without)."""
    rows: list[list[Any]] = []

    def add(
        kind: str, item: dict[str, Any], pixels: Sequence[Sequence[float]], lonlat_key: str
    ) -> None:
        centre = _centre(item.get(lonlat_key))
        where = f"{centre[0]:.6f}, {centre[1]:.6f}" if centre else ""
        bounds = ", ".join(f"{v:.0f}" for v in _bounds(pixels))
        rows.append([len(rows) + 1, _label(item), kind, bounds, where])

    # The serialised geometry: pixel coordinates plus lon/lat when the answer is georeferenced.
    geometry = answer.geometry() if answer is not None else {}
    for item in geometry.get("boxes", []):
        add("box", item, _box_corners(item["box"]), "polygon_lonlat")
    for item in geometry.get("obboxes", []):
        add("oriented box", item, item["corners"], "corners_lonlat")
    for item in geometry.get("polygons", []):
        if item.get("points"):
            add("polygon", item, item["points"], "points_lonlat")
    return rows


def has_lonlat(answer: Any) -> bool:
    geo = getattr(answer, "geo", None) or {}
    return bool(geo.get("georeferenced") and geo.get("lonlat", geo.get("crs") is not None))


def answer_geojson(answer: Any) -> dict[str, Any] | None:
    """The answer's geometry as a lon/lat GeoJSON FeatureCollection; ``None`` when there is none.

    ``None`` for answers about images without georeferencing (or without a CRS), and for
    answers with no geometry at all.
    """
    if answer is None or not has_lonlat(answer):
        return None
    has_mask = getattr(answer, "mask", None) is not None and np.asarray(answer.mask).any()
    if not (answer.boxes or answer.obboxes or answer.polygons or has_mask):
        return None
    if hasattr(answer, "to_geojson"):
        return answer.to_geojson()
    try:
        from geoassist.geo import answer_to_geojson
    except ImportError:  # an older library without GeoJSON output
        return None
    return answer_to_geojson(answer)


def describe_geo(answer: Any) -> str:
    """One line about where the answer lies on the Earth (or that the image has no georeference)."""
    geo = getattr(answer, "geo", None) or {}
    if not geo.get("georeferenced"):
        return "Pixel coordinates only: the image is not georeferenced."
    parts = [f"CRS {geo.get('crs') or 'unknown'}"]
    if geo.get("gsd_m"):
        parts.append(f"{geo['gsd_m']:g} m/pixel")
    bounds = geo.get("bounds_lonlat")
    if bounds:
        west, south, east, north = bounds
        parts.append(f"lon {west:.5f}…{east:.5f}, lat {south:.5f}…{north:.5f}")
    return " · ".join(parts)


def fit_scale(size: tuple[int, int], max_side: int) -> float:
    """The factor that brings an image of ``size`` (width, height) within ``max_side``."""
    longest = max(size)
    return 1.0 if longest <= max_side else max_side / longest


def region_from_clicks(a: Sequence[float], b: Sequence[float]) -> list[float] | None:
    """The box between two clicked corners (any order); ``None`` when it has no area."""
    x1, x2 = sorted((float(a[0]), float(b[0])))
    y1, y2 = sorted((float(a[1]), float(b[1])))
    if math.isclose(x1, x2) or math.isclose(y1, y2):
        return None
    return [x1, y1, x2, y2]
