"""Label geometry for recipes: mask→box (M2B), box→caption (B2C), positions, RLE, text masks.

Box-to-caption and mask-to-box follow the idea RemoteCLIP used to turn detection and
segmentation labels into image–text pairs: count what is there, say where, and derive the
boxes of a mask from its connected components. The sentences are written from the labels
only, so they are exactly as right as the labels.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from geoassist.formats import format_mask, grid_to_mask, mask_to_grid

CELL_NAMES = (
    ("top left", "top", "top right"),
    ("left", "centre", "right"),
    ("bottom left", "bottom", "bottom right"),
)

_NUMBERS = (
    "no",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
)


def label_name(label: str) -> str:
    """A class label as words: ``small-vehicle`` → ``small vehicle``, ``Ground_Track_Field`` → ``ground track field``."""
    text = label.replace("-", " ").replace("_", " ").strip()
    # CamelCase (AID/EuroSAT class names such as "BareLand", "AnnualCrop") becomes words
    words = []
    for word in text.split():
        if word.isupper() or word.islower():
            words.append(word.lower() if not word.isupper() or len(word) > 3 else word)
            continue
        pieces, current = [], word[0]
        for ch in word[1:]:
            if ch.isupper() and not current[-1].isupper():
                pieces.append(current)
                current = ch
            else:
                current += ch
        pieces.append(current)
        words += [p.lower() for p in pieces]
    return " ".join(words)


_IRREGULAR = {
    "person": "people",
    "child": "children",
    "man": "men",
    "woman": "women",
    "leaf": "leaves",
    "sheep": "sheep",
}
_UNCOUNTABLE = {
    "farmland",
    "grass",
    "water",
    "bareland",
    "bare land",
    "meadow",
    "forest",
    "desert",
    "beach",
    "snow",
    "ice",
    "mountain",
    "commercial",
    "residential",
    "industrial",
}


def plural(noun: str) -> str:
    """English plural of the last word of ``noun`` (good enough for dataset class names)."""
    words = noun.split()
    if not words:
        return noun
    last = words[-1]
    if noun in _UNCOUNTABLE or last in _UNCOUNTABLE:
        return noun
    if last in _IRREGULAR:
        last = _IRREGULAR[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last += "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    else:
        last += "s"
    return " ".join([*words[:-1], last])


def article(noun: str) -> str:
    return ("an " if noun[:1].lower() in "aeiou" else "a ") + noun


def number_words(n: int) -> str:
    return _NUMBERS[n] if 0 <= n < len(_NUMBERS) else str(n)


def quantity(n: int, noun: str) -> str:
    """``one ship``, ``three ships``, ``no ships``."""
    return f"{number_words(n)} {noun if n == 1 else plural(noun)}"


def position_word(box: Sequence[float], size: Sequence[int]) -> str:
    """Where a box's centre lies in a 3 × 3 division of the image (``top left`` … ``bottom right``)."""
    width, height = size
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    col = min(2, max(0, int(3 * cx / width)))
    row = min(2, max(0, int(3 * cy / height)))
    return CELL_NAMES[row][col]


def box_of_points(points: Sequence[Sequence[float]]) -> list[float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return [min(xs), min(ys), max(xs), max(ys)]


def box_overlaps_image(box: Sequence[float], size: Sequence[int]) -> bool:
    """Whether a box has positive area and overlaps the image (boxes wholly outside are unusable)."""
    x1, y1, x2, y2 = box
    width, height = size
    if not all(math.isfinite(v) for v in box):
        return False
    return x2 > x1 and y2 > y1 and x2 > 0 and y2 > 0 and x1 < width and y1 < height


def clip_box(box: Sequence[float], size: Sequence[int]) -> list[float]:
    width, height = size
    x1, y1, x2, y2 = box
    return [
        max(0.0, float(x1)),
        max(0.0, float(y1)),
        min(float(width), float(x2)),
        min(float(height), float(y2)),
    ]


# --------------------------------------------------------------------------- B2C


def where_phrase(cell: str) -> str:
    """``in the centre``, ``on the left``, ``at the top``, ``in the top left``… for a cell name."""
    if cell == "centre":
        return "in the centre"
    if cell in ("left", "right"):
        return f"on the {cell}"
    if cell in ("top", "bottom"):
        return f"at the {cell}"
    return f"in the {cell}"


def box_to_caption(
    objects: Sequence[dict[str, Any]], size: Sequence[int], *, max_classes: int = 4
) -> str:
    """A caption from labelled boxes: what is there, how many, and where (RemoteCLIP's B2C idea).

    ``objects`` are dicts with ``label`` (already in words) and ``box`` in pixels. Classes are
    named from the most to the least frequent (ties by name), one sentence each; a class that
    lies all or mostly in one ninth of the image gets that part named.
    """
    if not objects:
        return "There are no annotated objects in the image."
    by_class: dict[str, list[Sequence[float]]] = {}
    for obj in objects:
        by_class.setdefault(obj["label"], []).append(obj["box"])
    order = sorted(by_class, key=lambda c: (-len(by_class[c]), c))
    sentences = []
    for label in order[:max_classes]:
        boxes = by_class[label]
        where = Counter(position_word(b, size) for b in boxes)
        cell, hits = where.most_common(1)[0]
        verb = "is" if len(boxes) == 1 else "are"
        sentence = f"There {verb} {quantity(len(boxes), label)}"
        if hits == len(boxes):
            sentence += f" {where_phrase(cell)}"
        elif hits * 2 > len(boxes):
            sentence += f", most of them {where_phrase(cell)}"
        sentences.append(sentence + ".")
    rest = len(order) - max_classes
    if rest > 0:
        sentences.append(
            f"Objects of {number_words(rest)} other {'class' if rest == 1 else 'classes'} are also present."
        )
    return " ".join(sentences)


def region_caption(label: str, box: Sequence[float], size: Sequence[int]) -> str:
    """A short description of one labelled box: ``A ship in the top left of the image.``"""
    cell = position_word(box, size)
    return f"{article(label).capitalize()} {where_phrase(cell)} of the image."


def _join(parts: Sequence[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# --------------------------------------------------------------------------- M2B


def mask_to_boxes(
    mask: np.ndarray, *, min_area: int = 1, connectivity: int = 8
) -> list[dict[str, Any]]:
    """Connected components of a boolean mask as ``{"box": [x1, y1, x2, y2], "area": px}`` (M2B).

    Components smaller than ``min_area`` pixels are left out (the caller accounts for them).
    Boxes are in pixels with exclusive right/bottom edges; components are ordered top to bottom,
    then left to right.
    """
    from scipy import ndimage

    structure = np.ones((3, 3), bool) if connectivity == 8 else None
    labels, n = ndimage.label(np.asarray(mask, bool), structure=structure)
    if n == 0:
        return []
    out = []
    areas = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, n + 1))
    for index, region in enumerate(ndimage.find_objects(labels)):
        if region is None:
            continue
        area = int(areas[index])
        if area < min_area:
            continue
        ys, xs = region
        out.append(
            {
                "box": [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)],
                "area": area,
            }
        )
    out.sort(key=lambda c: (c["box"][1], c["box"][0]))
    return out


# --------------------------------------------------------------------------- text-as-mask

MASK_GRIDS = (16, 32, 64)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def text_mask(
    mask: np.ndarray, grids: Sequence[int] = MASK_GRIDS, min_iou: float = 0.5
) -> tuple[str, int, float]:
    """The text-as-mask answer for ``mask``: the coarsest grid in ``grids`` whose cells keep IoU ≥ ``min_iou``.

    Returns ``(answer, grid side, IoU of the answer's mask with the true mask)``; an empty mask
    answers ``none``.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        return "none", 0, 1.0
    height, width = mask.shape
    best: tuple[str, int, float] | None = None
    for side in grids:
        cells = mask_to_grid(mask, (side, side))
        iou = mask_iou(grid_to_mask(cells, (width, height)), mask)
        if best is None or iou > best[2]:
            best = (format_mask(mask, (side, side)), side, iou)
        if iou >= min_iou:
            return format_mask(mask, (side, side)), side, round(iou, 4)
    assert best is not None
    return best[0], best[1], round(best[2], 4)


# ---------------------------------------------------------------------- COCO polygons


def polygon_mask(polygons: Sequence[Sequence[float]], size: Sequence[int]) -> np.ndarray:
    """Rasterise COCO-style flat polygons ``[x1, y1, x2, y2, …]`` (pixel edges) to a boolean mask."""
    from PIL import Image, ImageDraw

    width, height = size
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        points = [(float(poly[i]), float(poly[i + 1])) for i in range(0, len(poly) - 1, 2)]
        if len(points) >= 3:
            draw.polygon(points, fill=1)
    return np.asarray(canvas, bool)
