"""COCO instances JSON (your own data, iSAID) and iSAID's palette PNG pair (class colours + instance ids)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.readers.common import DatasetFormatError, Malformed, json_list, load_json, need

# iSAID class colours in ``*_instance_color_RGB.png`` (iSAID_Devkit's palette), keyed by the category
# names of its COCO JSON.
ISAID_PALETTE = {
    "ship": (0, 0, 63), "storage_tank": (0, 63, 63), "baseball_diamond": (0, 63, 0), "tennis_court": (0, 63, 127),
    "basketball_court": (0, 63, 191), "Ground_Track_Field": (0, 63, 255), "Bridge": (0, 127, 63),
    "Large_Vehicle": (0, 127, 127), "Small_Vehicle": (0, 0, 127), "Helicopter": (0, 0, 191), "Swimming_pool": (0, 0, 255),
    "Roundabout": (0, 191, 127), "Soccer_ball_field": (0, 127, 191), "plane": (0, 127, 255), "Harbor": (0, 100, 155),
}  # fmt: skip


def read_coco(path: str | Path, malformed: list[Malformed] | None = None) -> dict[str, Any]:
    """COCO instances JSON: ``images``, ``categories`` by id, and ``annotations`` grouped by image id.

    An image without ``id``/``file_name`` or an annotation without ``image_id`` is malformed: it
    raises :class:`DatasetFormatError`, unless a ``malformed`` list is given to collect it.
    ``images`` and ``annotations`` may be absent (an empty list); a file that is not JSON
    raises.
    """
    path = Path(path)
    data = load_json(path, "COCO JSON")
    if not isinstance(data, dict):
        raise DatasetFormatError(
            f"{path} (COCO JSON) holds a {type(data).__name__}, not an object with images/annotations/categories"
        )
    bad: list[Malformed] = []
    images = []
    for n, im in enumerate(
        json_list(data, "images", path, "COCO JSON") if "images" in data else []
    ):
        if not isinstance(im, dict) or im.get("id") is None or not im.get("file_name"):
            bad.append(
                Malformed(
                    f"{path.name}#image{n}",
                    "malformed annotation",
                    f"image {n} has no id or file_name ({str(im)[:120]})",
                )
            )
        else:
            images.append(im)
    categories = {}
    for n, c in enumerate(
        json_list(data, "categories", path, "COCO JSON") if "categories" in data else []
    ):
        if not isinstance(c, dict) or c.get("id") is None or "name" not in c:
            bad.append(
                Malformed(
                    f"{path.name}#category{n}",
                    "malformed annotation",
                    f"category {n} has no id or name",
                )
            )
        else:
            categories[c["id"]] = c["name"]
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for n, a in enumerate(
        json_list(data, "annotations", path, "COCO JSON") if "annotations" in data else []
    ):
        if not isinstance(a, dict) or a.get("image_id") is None:
            bad.append(
                Malformed(
                    f"{path.name}#annotation{n}",
                    "malformed annotation",
                    f"annotation {n} has no image_id ({str(a)[:120]})",
                )
            )
        else:
            by_image.setdefault(a["image_id"], []).append(a)
    if bad and malformed is None:
        raise DatasetFormatError(
            f"{path}: {bad[0].detail}; fix the entry (or build with `geoassist data build`, which rejects it and goes on)"
        )
    if malformed is not None:
        malformed += bad
    return {"images": images, "categories": categories, "annotations": by_image}


def rgb_code(rgb: np.ndarray) -> np.ndarray:
    """One integer per pixel (or colour) from its RGB: ``R·65536 + G·256 + B``."""
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]


def isaid_instances(color: np.ndarray, ids: np.ndarray) -> list[dict[str, Any]]:
    """Instances from iSAID's class-colour and instance-id arrays (H×W×3): each non-black id colour is one.

    Returns, in instance-id order, ``{"class", "box", "area_px", "id_rgb"}``: the class is the
    palette name of the majority class colour under the instance, None when that colour is
    not in :data:`ISAID_PALETTE`; ``box`` is ``[x1, y1, x2, y2]`` of its pixels.
    """
    from scipy import ndimage

    id_code = rgb_code(ids)
    uniques, inverse = np.unique(id_code, return_inverse=True)
    inverse = inverse.reshape(id_code.shape)
    names = {int(rgb_code(np.array(c))): n for n, c in ISAID_PALETTE.items()}
    class_code = rgb_code(color)
    out = []
    for index, region in enumerate(ndimage.find_objects(inverse + 1)):
        if region is None or uniques[index] == 0:
            continue
        inside = inverse[region] == index
        codes, counts = np.unique(class_code[region][inside], return_counts=True)
        ys, xs = region
        value = int(uniques[index])
        out.append(
            {
                "class": names.get(int(codes[np.argmax(counts)])),
                "box": [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)],
                "area_px": int(inside.sum()),
                "id_rgb": [value // 65536, (value // 256) % 256, value % 256],
            }
        )
    return out


def _rgb(path: Path, what: str) -> np.ndarray:
    from PIL import Image

    with Image.open(need(path, what)) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class MaskInstance:
    cls: str
    mask: np.ndarray = field(repr=False)

    @property
    def box(self) -> list[float]:
        ys, xs = np.nonzero(self.mask)
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def read_isaid_masks(color_png: str | Path, id_png: str | Path) -> list[MaskInstance]:
    """Instances (class ``unknown`` off the palette) with full masks, in instance-id order."""
    color = _rgb(Path(color_png), "iSAID colour mask")
    ids = _rgb(Path(id_png), "iSAID id mask")
    id_code = rgb_code(ids)
    return [
        MaskInstance(inst["class"] or "unknown", id_code == int(rgb_code(np.array(inst["id_rgb"]))))
        for inst in isaid_instances(color, ids)
    ]
