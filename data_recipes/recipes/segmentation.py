"""Pixel grounding: iSAID (palette PNGs or COCO JSON), LoveDA, RRSIS-D → referring segmentation.

Masks are answered in the text-as-mask grammar (``<mask>RxC|…</mask>``, the coarsest of 16, 32
or 64 cells a side that keeps IoU ≥ 0.5 with the true mask; the IoU reached is kept in
``meta.mask_text_iou``). Targets point at the source's own mask files with the pixel values
that form the target (``mask`` + ``mask_values``), so nothing is re-encoded or lost.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
    stable_pick,
)
from ..geometry import label_name, plural, polygon_mask, rle_encode, text_mask
from ..tasks import check_objects, object_records

# iSAID's class colours in ``*_instance_color_RGB.png`` (iSAID_Devkit), by the category names of its COCO JSON.
ISAID_PALETTE: dict[str, tuple[int, int, int]] = {
    "ship": (0, 0, 63),
    "storage_tank": (0, 63, 63),
    "baseball_diamond": (0, 63, 0),
    "tennis_court": (0, 63, 127),
    "basketball_court": (0, 63, 191),
    "Ground_Track_Field": (0, 63, 255),
    "Bridge": (0, 127, 63),
    "Large_Vehicle": (0, 127, 127),
    "Small_Vehicle": (0, 0, 127),
    "Helicopter": (0, 0, 191),
    "Swimming_pool": (0, 0, 255),
    "Roundabout": (0, 191, 127),
    "Soccer_ball_field": (0, 127, 191),
    "plane": (0, 127, 255),
    "Harbor": (0, 100, 155),
}
_COLOR_SUFFIX = "_instance_color_RGB"
_ID_SUFFIX = "_instance_id_RGB"


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _code(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] * 65536 + rgb[..., 1] * 256 + rgb[..., 2]


def instances_from_palette(color: np.ndarray, ids: np.ndarray) -> tuple[list[dict[str, Any]], int]:
    """Instances from iSAID's class-colour and instance-id PNGs: each distinct non-black id colour is one instance.

    Returns objects ``{"class", "box", "area_px", "id_rgb"}`` (the class is the majority class
    colour under the instance) and the number of instance pixels whose class colour is not in
    the iSAID palette.
    """
    from scipy import ndimage

    id_code = _code(ids)
    uniques, inverse = np.unique(id_code, return_inverse=True)
    inverse = inverse.reshape(id_code.shape)
    names = {int(_code(np.array(c))): n for n, c in ISAID_PALETTE.items()}
    class_code = _code(color)
    objects, unknown = [], 0
    for index, region in enumerate(ndimage.find_objects(inverse + 1)):
        if region is None or uniques[index] == 0:
            continue
        inside = inverse[region] == index
        codes, counts = np.unique(class_code[region][inside], return_counts=True)
        best = int(codes[np.argmax(counts)])
        if best not in names:
            unknown += int(inside.sum())
            continue
        ys, xs = region
        value = int(uniques[index])
        objects.append(
            {
                "class": names[best],
                "box": [float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)],
                "area_px": int(inside.sum()),
                "id_rgb": [value // 65536, (value // 256) % 256, value % 256],
            }
        )
    objects.sort(key=lambda o: (o["box"][1], o["box"][0], o["id_rgb"]))
    return objects, unknown


@register
class ISAID(Recipe):
    """iSAID: instance segmentation of 15 classes on DOTA images (655,451 instances).

    Layout (CAPTAIN-WHU release): ``{train,val}/images/P0000.png`` with the masks
    ``P0000_instance_color_RGB.png`` (class colours of iSAID_Devkit's palette) and
    ``P0000_instance_id_RGB.png`` (one colour per instance) found anywhere under the split
    folder, and ``{train,val}/Annotations/iSAID_<split>.json`` (COCO instances). When the
    palette PNGs are there, instances, boxes and class masks come from their pixels (targets
    point at the colour PNG with the class colour as ``mask_values``); otherwise from the COCO
    polygons (``polygons`` targets). Records: ``refer_seg`` per class present (plus one absent
    class answered ``none``) and the object records (detection, grounding, counting, presence,
    referring, region captions, B2C caption). Checked against ``rs-samples/isaid`` (P0003) and
    the COCO JSON written by GeoSynth's exporter.
    """

    info = RecipeInfo(
        name="isaid",
        title="iSAID",
        tasks=(
            "refer_seg",
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
        ),
        licence="academic use only (iSAID / DOTA terms)",
        citation="S. Waqas Zamir, A. Arora, A. Gupta et al. iSAID: A Large-scale Dataset for Instance Segmentation in Aerial Images. CVPR Workshops 2019.",
        layout="{train,val}/images/<id>.png + <id>_instance_color_RGB.png + <id>_instance_id_RGB.png, and/or {train,val}/Annotations/iSAID_<split>.json",
        splits=("train", "val"),
        checked_against="real files: rs-samples/isaid (P0003 palette PNGs); COCO JSON schema",
        url="https://captain-whu.github.io/iSAID/",
    )

    def _splits(self, src: Path) -> dict[str, Path]:
        if not src.is_dir():
            return {}
        return {d.name: d for d in sorted(src.iterdir()) if d.is_dir() and (d / "images").is_dir()}

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._splits(src):
            raise DatasetNotFoundError(
                f"no <split>/images/ folders in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return any(
            any(d.rglob(f"*{_COLOR_SUFFIX}.png"))
            or (d / "Annotations" / f"iSAID_{s}.json").is_file()
            for s, d in self._splits(src).items()
        )

    def available_splits(self, src: Path) -> list[str]:
        return list(self._splits(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        found = self._splits(src)
        for split in split_filter(splits, list(found), self.info.name):
            base = found[split]
            masks = {
                p.name: p.relative_to(src).as_posix() for p in base.rglob("*_instance_*_RGB.png")
            }
            coco_path = base / "Annotations" / f"iSAID_{split}.json"
            coco: dict[str, Any] | None = None
            if coco_path.is_file():
                coco = json.loads(coco_path.read_text(encoding="utf-8"))
            images = sorted(
                p
                for p in (base / "images").iterdir()
                if p.suffix.lower() in (".png", ".jpg", ".tif") and "_instance_" not in p.stem
            )
            by_file: dict[str, dict[str, Any]] = {}
            annotations: dict[int, list[dict[str, Any]]] = {}
            categories: dict[int, str] = {}
            if coco is not None:
                by_file = {im["file_name"]: im for im in coco.get("images", [])}
                categories = {c["id"]: c["name"] for c in coco.get("categories", [])}
                for a in coco.get("annotations", []):
                    annotations.setdefault(a["image_id"], []).append(a)
            for image in images:
                stem = image.stem
                entry = by_file.get(image.name)
                yield {
                    "id": stem,
                    "split": split,
                    "image": image.relative_to(src).as_posix(),
                    "color": masks.get(f"{stem}{_COLOR_SUFFIX}.png"),
                    "ids": masks.get(f"{stem}{_ID_SUFFIX}.png"),
                    "coco": None
                    if entry is None
                    else [
                        {
                            "class": categories.get(a["category_id"], str(a["category_id"])),
                            "bbox": a.get("bbox"),
                            "segmentation": a.get("segmentation"),
                            "id": a.get("id"),
                        }
                        for a in annotations.get(entry["id"], [])
                    ],
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        source, oid = self.info.name, item["id"]
        rid = f"{source}:{oid}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        width, height = size  # type: ignore[misc]
        outcomes: list[Outcome] = []
        class_masks: dict[str, np.ndarray] = {}
        mask_targets: dict[str, dict[str, Any]] = {}
        use_palette = (
            bool(item["color"] and item["ids"]) and ctx.options.get("instances", "masks") != "coco"
        )
        if use_palette:
            try:
                color, ids = _rgb(ctx.src / item["color"]), _rgb(ctx.src / item["ids"])
            except Exception as exc:
                return [Reject(rid, "unreadable mask", f"{item['color']}: {exc}")]
            if color.shape[:2] != (height, width) or ids.shape[:2] != (height, width):
                return [
                    Reject(
                        rid,
                        "size mismatch",
                        f"masks {color.shape[1]}x{color.shape[0]} vs image {width}x{height}",
                    )
                ]
            raw, unknown = instances_from_palette(color, ids)
            if unknown:
                outcomes.append(
                    Dropped(
                        rid,
                        "unknown class",
                        f"{unknown} instance pixels have colours outside the iSAID palette",
                    )
                )
            code = _code(color)
            for name, rgb in ISAID_PALETTE.items():
                m = code == int(_code(np.array(rgb)))
                if m.any():
                    class_masks[label_name(name)] = m
                mask_targets[label_name(name)] = {"mask": item["color"], "mask_values": [list(rgb)]}
            objects = [{**o, "label": label_name(o["class"])} for o in raw]
            kept, dropped = check_objects(rid, objects, size, list(ISAID_PALETTE))
        elif item["coco"] is not None:
            objects = []
            for n, a in enumerate(item["coco"]):
                bbox = a.get("bbox")
                if not bbox or len(bbox) != 4:
                    outcomes.append(
                        Dropped(rid, "malformed annotation", f"annotation {n} has no bbox")
                    )
                    continue
                x, y, w, h = (float(v) for v in bbox)
                obj = {
                    "class": a["class"],
                    "label": label_name(a["class"]),
                    "box": [x, y, x + w, y + h],
                    "id": a.get("id"),
                }
                seg = a.get("segmentation")
                if isinstance(seg, list) and seg and isinstance(seg[0], list) and len(seg[0]) >= 6:
                    obj["points"] = [
                        [seg[0][i], seg[0][i + 1]] for i in range(0, len(seg[0]) - 1, 2)
                    ]
                    obj["segmentation"] = seg
                objects.append(obj)
            kept, dropped = check_objects(rid, objects, size, list(ISAID_PALETTE))
            for obj in kept:
                if "segmentation" in obj:
                    m = polygon_mask(obj["segmentation"], size)
                    class_masks[obj["label"]] = (
                        class_masks.get(obj["label"], np.zeros((height, width), bool)) | m
                    )
        else:
            return [
                Reject(
                    rid,
                    "missing mask",
                    f"no palette PNGs and no COCO annotations for {item['image']}",
                )
            ]
        outcomes += dropped
        labels = [label_name(c) for c in ISAID_PALETTE]
        meta = {"instances_from": "palette PNGs" if use_palette else "COCO JSON"}
        common = {"source": source, "split": item["split"], "images": [item["image"]]}
        present = sorted(class_masks)
        negatives = stable_pick(
            f"{rid}:segment-negative", [c for c in labels if c not in class_masks], 1
        )
        for label in [*present, *negatives]:
            mask = class_masks.get(label)
            if mask is None:
                answer, grid, iou = "none", 0, 1.0
            else:
                answer, grid, iou = text_mask(mask)
            targets = dict(mask_targets.get(label, {}))
            objs = [o for o in kept if o["label"] == label]
            targets["boxes"] = [
                {"label": label, "box": o["box"], "class": o["class"]} for o in objs
            ]
            if not use_palette:
                targets["polygons"] = [
                    {"label": label, "points": o["points"]} for o in objs if "points" in o
                ]
                targets["mask_rle"] = (
                    rle_encode(mask)
                    if mask is not None
                    else {"size": [height, width], "counts": [height * width]}
                )
            targets["count"] = len(objs)
            outcomes.append(
                make_record(
                    oid=f"{oid}:segment:{label}",
                    task="refer_seg",
                    argument=f"all {plural(label)}",
                    answer=answer,
                    targets=targets,
                    meta={
                        "width": width,
                        "height": height,
                        **meta,
                        "mask_grid": grid,
                        "mask_text_iou": iou,
                    },
                    **common,
                )
            )
        outcomes += object_records(
            source=source,
            oid=oid,
            split=item["split"],
            image=item["image"],
            size=size,
            objects=kept,
            class_labels=labels,
            meta=meta,
            polygons=not use_palette,
        )
        return outcomes
