"""Stage 0's dense targets from exact truth, and augmentation that moves them with the pixels.

A :class:`Truth` holds what is known about one square image (or a pair) at full
resolution: scene class per label space, the semantic map, object centres with
oriented box sizes and angles, and a change mask. GeoSynth fills every field
exactly (:func:`truth_from_scene`, :func:`truth_from_pair`); real samples fill what
their labels give (the rest is marked unknown, so no head learns a guess).

:func:`augment` applies one random label-preserving transform — flips, 90°
rotations, a zoom-in crop (scale / GSD jitter) to the geometry of pixels *and*
truth alike, then colour, illumination, haze, blur, noise and JPEG to the pixels
only. :func:`build_targets` rasterises a :class:`Truth` at a ``grid``×``grid`` cell
map for the heads in :mod:`geoassist.model.dense_heads`.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field, replace

import numpy as np

from geoassist.errors import ConfigError
from geoassist.synth.palette import OBJECT_CLASSES, SEMANTIC_CLASSES

IGNORE = 255  # semantic code of pixels whose class is not known
OBJECT_INDEX = {c: i for i, c in enumerate(OBJECT_CLASSES)}
SEMANTIC_INDEX = {c: i for i, c in enumerate(SEMANTIC_CLASSES)}
LANDCOVER_MIN_FRACTION = 0.005  # a land cover is "present" from half a percent of the image


class UnknownClassError(ConfigError):
    """A label names a class that the dense heads have no output for."""


def object_index(cls: str) -> int:
    try:
        return OBJECT_INDEX[cls]
    except KeyError:
        raise UnknownClassError(
            f"object class {cls!r} is not one the dense heads know ({', '.join(OBJECT_CLASSES)}); "
            "map it to one of them (or to None to leave it unlabelled) in the reader that produced it"
        ) from None


@dataclass
class Truth:
    """Known truth of one square image at full resolution (pixel coordinates, y down)."""

    image: np.ndarray  # (S, S, 3) uint8
    scene: dict[str, int] = field(default_factory=dict)  # label space → class index
    semantic: np.ndarray | None = None  # (S, S) uint8 codes into SEMANTIC_CLASSES, IGNORE = unknown
    centres: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))  # (N, 2) cx, cy
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))  # (N, 3) w, h, angle°
    classes: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,) OBJECT_CLASSES
    objects_known: bool = False  # every object of the known classes is listed (counts are exact)
    known_object_classes: list[int] | None = None  # None: all of OBJECT_CLASSES
    presence: dict[int, bool] = field(default_factory=dict)  # explicit labels, SEMANTIC_CLASSES index
    counts: dict[int, float] = field(default_factory=dict)  # explicit labels, OBJECT_CLASSES index
    image_b: np.ndarray | None = None  # the second date of a pair
    change: np.ndarray | None = None  # (S, S) bool, changed pixels
    caption: str | None = None

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def truth_from_annotation(image: np.ndarray, ann, scene_space: str = "geosynth") -> Truth:
    """Exact truth of a GeoSynth scene (an HR :class:`~geoassist.synth.types.SceneAnnotation`)."""
    from geoassist.synth import scene_classes

    if image.shape[0] != image.shape[1]:
        raise ConfigError(f"dense targets need square images, got {image.shape[1]}x{image.shape[0]}")
    spaces = scene_classes("hr")
    if ann.scene_class not in spaces:
        raise UnknownClassError(
            f"scene class {ann.scene_class!r} is not one of GeoSynth's HR scene classes ({', '.join(spaces)})"
        )
    things = [o for o in ann.objects if not o.is_region]
    centres = np.array([[o.obox.cx, o.obox.cy] for o in things], np.float32).reshape(-1, 2)
    boxes = np.array([[o.obox.w, o.obox.h, o.obox.angle_deg] for o in things], np.float32).reshape(-1, 3)
    classes = np.array([object_index(o.cls) for o in things], np.int64)
    semantic = None
    if ann.semantic_mask is not None:
        codes = np.full(256, IGNORE, np.uint8)
        for i, name in enumerate(ann.semantic_classes):
            if name in SEMANTIC_INDEX:
                codes[i] = SEMANTIC_INDEX[name]
        semantic = codes[ann.semantic_mask.astype(np.int64)]
    caption = ann.captions[0] if ann.captions else None
    return Truth(
        image=np.ascontiguousarray(image[..., :3]),
        scene={scene_space: spaces.index(ann.scene_class)},
        semantic=semantic,
        centres=centres,
        boxes=boxes,
        classes=classes,
        objects_known=True,
        caption=caption,
    )


def truth_from_scene(scene) -> Truth:
    return truth_from_annotation(scene.image, scene.annotation)


def truth_from_pair(pair) -> Truth:
    """The first date's exact truth, the second date's pixels and the change mask."""
    truth = truth_from_annotation(pair.images[0], pair.annotation.scenes[0])
    truth.image_b = np.ascontiguousarray(pair.images[-1][..., :3])
    truth.change = np.asarray(pair.annotation.change_mask, bool)
    if pair.annotation.change_captions:
        truth.caption = pair.annotation.change_captions[0]
    return truth


# --------------------------------------------------------------------------- augmentation


def _flip_x(t: Truth) -> Truth:
    s = t.size
    c = t.centres.copy()
    c[:, 0] = s - c[:, 0]
    b = t.boxes.copy()
    b[:, 2] = -b[:, 2]
    return _geom(t, lambda a: a[:, ::-1], c, b)


def _flip_y(t: Truth) -> Truth:
    s = t.size
    c = t.centres.copy()
    c[:, 1] = s - c[:, 1]
    b = t.boxes.copy()
    b[:, 2] = -b[:, 2]
    return _geom(t, lambda a: a[::-1], c, b)


def _rot90(t: Truth) -> Truth:
    """``np.rot90`` (counter-clockwise on screen): (x, y) → (y, S - x), angles −90°."""
    s = t.size
    c = np.stack([t.centres[:, 1], s - t.centres[:, 0]], axis=1).astype(np.float32)
    b = t.boxes.copy()
    b[:, 2] = b[:, 2] - 90.0
    return _geom(t, lambda a: np.rot90(a), c, b)


def _geom(t: Truth, op, centres: np.ndarray, boxes: np.ndarray) -> Truth:
    def apply(a):
        return None if a is None else np.ascontiguousarray(op(a))

    boxes = boxes.copy()
    boxes[:, 2] = (boxes[:, 2] + 180.0) % 360.0 - 180.0
    return replace(
        t,
        image=apply(t.image),
        semantic=apply(t.semantic),
        image_b=apply(t.image_b),
        change=apply(t.change),
        centres=centres.reshape(-1, 2),
        boxes=boxes.reshape(-1, 3),
    )


def _resize(a: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    from PIL import Image

    if a.shape[0] == size and a.shape[1] == size:
        return a
    mode = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    if a.dtype == bool:
        return np.asarray(Image.fromarray(a.astype(np.uint8)).resize((size, size), mode)) > 0
    return np.asarray(Image.fromarray(a).resize((size, size), mode))


def crop_zoom(t: Truth, x0: float, y0: float, side: float) -> Truth:
    """The square window (x0, y0, side) resized back to the full size; objects whose centre
    leaves the window leave the truth (counts and presence follow)."""
    s = t.size
    ix0, iy0, iside = int(round(x0)), int(round(y0)), max(1, int(round(side)))
    scale = s / iside

    def cut(a, nearest):
        if a is None:
            return None
        return _resize(np.ascontiguousarray(a[iy0 : iy0 + iside, ix0 : ix0 + iside]), s, nearest)

    c = (t.centres - np.array([ix0, iy0], np.float32)) * scale
    inside = (c[:, 0] >= 0) & (c[:, 0] < s) & (c[:, 1] >= 0) & (c[:, 1] < s)
    b = t.boxes[inside].copy()
    b[:, :2] *= scale
    return replace(
        t,
        image=cut(t.image, False),
        image_b=cut(t.image_b, False),
        semantic=cut(t.semantic, True),
        change=cut(t.change, True),
        centres=c[inside].astype(np.float32),
        boxes=b,
        classes=t.classes[inside],
        # explicit real labels are about the whole image: a crop would make them wrong
        presence={} if iside < s else t.presence,
        counts={} if iside < s else t.counts,
    )


def _photometric(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = image.astype(np.float32) / 255.0
    if rng.random() < 0.8:  # colour: brightness, contrast, saturation
        x = x * rng.uniform(0.8, 1.2)
        mean = x.mean()
        x = (x - mean) * rng.uniform(0.8, 1.2) + mean
        grey = x.mean(axis=2, keepdims=True)
        x = (x - grey) * rng.uniform(0.7, 1.3) + grey
    if rng.random() < 0.5:  # illumination: gamma
        x = np.clip(x, 0, 1) ** rng.uniform(0.75, 1.35)
    if rng.random() < 0.3:  # haze: blend toward a bright blue-grey
        veil = np.array([0.78, 0.8, 0.84], np.float32) * rng.uniform(0.85, 1.05)
        x = x * (1 - (a := rng.uniform(0.05, 0.35))) + veil * a
    if rng.random() < 0.3:  # sensor noise
        x = x + rng.normal(0, rng.uniform(0.005, 0.03), x.shape).astype(np.float32)
    out = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    if rng.random() < 0.45:  # blur and/or JPEG
        from PIL import Image, ImageFilter

        pil = Image.fromarray(out)
        if rng.random() < 0.5:
            pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.2))))
        if rng.random() < 0.6:
            buf = io.BytesIO()
            pil.save(buf, format="JPEG", quality=int(rng.integers(35, 92)))
            pil = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        out = np.array(pil, dtype=np.uint8)
    return out


def augment(t: Truth, rng: np.random.Generator, min_zoom: float = 0.7) -> Truth:
    """One random label-preserving view of ``t``; every target moves with the pixels."""
    if rng.random() < 0.5:
        t = _flip_x(t)
    if rng.random() < 0.5:
        t = _flip_y(t)
    for _ in range(int(rng.integers(0, 4))):
        t = _rot90(t)
    if min_zoom < 1.0 and rng.random() < 0.5:
        side = t.size * rng.uniform(min_zoom, 1.0)
        t = crop_zoom(t, rng.uniform(0, t.size - side), rng.uniform(0, t.size - side), side)
    return replace(
        t,
        image=_photometric(t.image, rng),
        image_b=None if t.image_b is None else _photometric(t.image_b, rng),
    )


# --------------------------------------------------------------------------- rasterising


def _cell_fractions(codes: np.ndarray, n_classes: int, grid: int) -> np.ndarray:
    """(n_classes + 1, grid, grid) pixel fractions per cell; the last channel is 'unknown'."""
    s = codes.shape[0]
    cell = s // grid
    codes = codes[: cell * grid, : cell * grid].astype(np.int64)
    codes = np.where(codes == IGNORE, n_classes, codes)
    onehot = np.zeros((n_classes + 1, cell * grid, cell * grid), np.float32)
    np.put_along_axis(onehot, codes[None], 1.0, axis=0)
    return onehot.reshape(n_classes + 1, grid, cell, grid, cell).mean(axis=(2, 4))


def build_targets(t: Truth, grid: int) -> dict[str, np.ndarray]:
    """Arrays for every head at a ``grid``×``grid`` cell map; ``*_mask`` says which entries are known.

    The cell side is ``size / grid`` pixels; an object belongs to the cell of its centre.
    """
    s = t.size
    if s % grid:
        raise ConfigError(f"a {s}px image does not split into {grid}x{grid} cells; use a size divisible by {grid}")
    cell = s / grid
    n_obj, n_sem = len(OBJECT_CLASSES), len(SEMANTIC_CLASSES)
    known_obj = np.zeros(n_obj, bool)
    if t.objects_known:
        known_obj[t.known_object_classes if t.known_object_classes is not None else slice(None)] = True
    counts = np.bincount(t.classes, minlength=n_obj).astype(np.float32)
    count, count_mask = np.where(known_obj, counts, 0.0).astype(np.float32), known_obj.copy()
    presence = np.zeros(n_sem, np.float32)
    presence_mask = np.zeros(n_sem, bool)
    for i, cls in enumerate(OBJECT_CLASSES):
        if known_obj[i]:
            presence[SEMANTIC_INDEX[cls]] = float(counts[i] > 0)
            presence_mask[SEMANTIC_INDEX[cls]] = True
    out: dict[str, np.ndarray] = {}
    if t.semantic is not None:
        fractions = _cell_fractions(t.semantic, n_sem, grid)
        known = 1.0 - fractions[-1]
        out["semantic"] = fractions[:-1] / np.maximum(known, 1e-6)
        out["semantic_mask"] = known > 0.5
        whole = fractions[:-1].mean(axis=(1, 2))
        if fractions[-1].mean() == 0:  # a full map: land cover presence is exact
            for name in SEMANTIC_CLASSES[: n_sem - n_obj]:
                i = SEMANTIC_INDEX[name]
                presence[i], presence_mask[i] = float(whole[i] >= LANDCOVER_MIN_FRACTION), True
    for i, value in t.presence.items():
        presence[i], presence_mask[i] = float(value), True
    for i, value in t.counts.items():
        count[i], count_mask[i] = float(value), True
    out.update(presence=presence, presence_mask=presence_mask, count=count, count_mask=count_mask)
    if t.objects_known:
        heat = np.zeros((n_obj, grid, grid), np.float32)
        size = np.zeros((2, grid, grid), np.float32)
        angle = np.zeros((2, grid, grid), np.float32)
        reg = np.zeros((grid, grid), bool)
        yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float32)
        for (cx, cy), (w, h, a), k in zip(t.centres, t.boxes, t.classes, strict=True):
            gx, gy = min(int(cx // cell), grid - 1), min(int(cy // cell), grid - 1)
            sigma = max(0.5, 0.15 * math.sqrt(max(w * h, 1.0)) / cell)
            g = np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma**2))
            heat[k] = np.maximum(heat[k], g)
            size[:, gy, gx] = (math.log(max(w, 1.0) / cell), math.log(max(h, 1.0) / cell))
            angle[:, gy, gx] = (math.sin(math.radians(2 * a)), math.cos(math.radians(2 * a)))
            reg[gy, gx] = True
        heat[~known_obj] = 0.0
        out.update(centre=heat, centre_mask=known_obj.copy(), box_size=size, box_angle=angle, box_mask=reg)
    if t.change is not None:
        out["change"] = _cell_fractions(t.change.astype(np.uint8), 2, grid)[1]
    return out


def centre_cell(t: Truth, index: int, grid: int) -> tuple[int, int]:
    """(row, col) of the cell holding object ``index``'s centre."""
    cell = t.size / grid
    cx, cy = t.centres[index]
    return min(int(cy // cell), grid - 1), min(int(cx // cell), grid - 1)
