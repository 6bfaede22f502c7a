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

from geoassist.readers import Malformed, read_coco
from geoassist.readers.coco import ISAID_PALETTE, isaid_instances, rgb_code
from geoassist.rle import mask_to_rle, rle_to_mask

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeError,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
    stable_pick,
)
from ..geometry import label_name, plural, polygon_mask, text_mask
from ..tasks import check_objects, object_records

_COLOR_SUFFIX = "_instance_color_RGB"
_ID_SUFFIX = "_instance_id_RGB"


def _rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def instances_from_palette(color: np.ndarray, ids: np.ndarray) -> tuple[list[dict[str, Any]], int]:
    """iSAID instances in reading order (top to bottom, left to right) and the pixels of instances off the palette."""
    found = isaid_instances(color, ids)
    objects = [o for o in found if o["class"] is not None]
    objects.sort(key=lambda o: (o["box"][1], o["box"][0], o["id_rgb"]))
    return objects, sum(o["area_px"] for o in found if o["class"] is None)


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
    ) -> Iterator[dict[str, Any] | Reject]:
        found = self._splits(src)
        for split in split_filter(splits, list(found), self.info.name):
            base = found[split]
            masks = {
                p.name: p.relative_to(src).as_posix() for p in base.rglob("*_instance_*_RGB.png")
            }
            coco_path = base / "Annotations" / f"iSAID_{split}.json"
            coco: dict[str, Any] | None = None
            if coco_path.is_file():
                malformed: list[Malformed] = []
                coco = read_coco(coco_path, malformed=malformed)
                for bad in malformed:
                    yield Reject(
                        f"{self.info.name}:{split}:{bad.key}",
                        bad.reason,
                        f"{coco_path.name}: {bad.detail}",
                    )
            images = sorted(
                p
                for p in (base / "images").iterdir()
                if p.suffix.lower() in (".png", ".jpg", ".tif") and "_instance_" not in p.stem
            )
            by_file: dict[str, dict[str, Any]] = {}
            annotations: dict[int, list[dict[str, Any]]] = {}
            categories: dict[int, str] = {}
            if coco is not None:
                by_file = {im["file_name"]: im for im in coco["images"]}
                categories = coco["categories"]
                annotations = coco["annotations"]
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
            code = rgb_code(color)
            for name, rgb in ISAID_PALETTE.items():
                m = code == int(rgb_code(np.array(rgb)))
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
                    mask_to_rle(mask)
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


# --------------------------------------------------------------------------- LoveDA

LOVEDA_CLASSES = {
    2: "building",
    3: "road",
    4: "water",
    5: "barren land",
    6: "forest",
    7: "agricultural land",
}  # 0 no-data, 1 background


@register
class LoveDA(Recipe):
    """LoveDA: 5,987 urban and rural GF images (1024², 0.3 m) with land-cover masks of 7 classes.

    Layout (Junjue-Wang/LoveDA release): ``{Train,Val}/{Urban,Rural}/images_png/<n>.png`` and
    ``masks_png/<n>.png`` (0 no-data, 1 background, 2 building, 3 road, 4 water, 5 barren,
    6 forest, 7 agriculture); ``Test/`` ships images only and is not read. Records per image:
    ``refer_seg`` for each class present (targets = the mask PNG with that value) and one absent
    class answered ``none``, plus the share of each present class as ``vqa`` (``qtype``
    ``area``) and the scene domain (urban/rural, ``qtype`` ``rural_urban``). Checked against
    the release layout used by torchgeo's LoveDA; tested on fake files.
    """

    info = RecipeInfo(
        name="loveda",
        title="LoveDA",
        tasks=("refer_seg", "vqa"),
        licence="CC BY-NC-SA 4.0",
        citation="J. Wang, Z. Zheng, A. Ma, X. Lu, Y. Zhong. LoveDA: A Remote Sensing Land-Cover Dataset for Domain Adaptive Semantic Segmentation. NeurIPS Datasets and Benchmarks 2021.",
        layout="{Train,Val}/{Urban,Rural}/{images_png,masks_png}/<n>.png",
        splits=("train", "val"),
        checked_against="LoveDA release layout (torchgeo LoveDA); fake files",
        url="https://github.com/Junjue-Wang/LoveDA",
    )

    def _splits(self, src: Path) -> dict[str, str]:
        return (
            {name.lower(): name for name in ("Train", "Val") if (src / name).is_dir()}
            if src.is_dir()
            else {}
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._splits(src):
            raise DatasetNotFoundError(f"no Train/ or Val/ in {src}; expected {self.info.layout}")

    def detect(self, src: Path) -> bool:
        return any(
            (src / folder / domain / "masks_png").is_dir()
            for folder in self._splits(src).values()
            for domain in ("Urban", "Rural")
        )

    def available_splits(self, src: Path) -> list[str]:
        return list(self._splits(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        found = self._splits(src)
        for split in split_filter(splits, list(found), self.info.name):
            for domain in ("Urban", "Rural"):
                folder = src / found[split] / domain / "images_png"
                for image in sorted(folder.glob("*.png")) if folder.is_dir() else []:
                    yield {
                        "id": f"{domain.lower()}/{image.stem}",
                        "split": split,
                        "domain": domain.lower(),
                        "image": image.relative_to(src).as_posix(),
                        "mask": f"{found[split]}/{domain}/masks_png/{image.name}",
                    }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        from PIL import Image

        rid = f"{self.info.name}:{item['id']}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        width, height = ctx.image_size(item["image"])  # type: ignore[misc]
        if not (ctx.src / item["mask"]).is_file():
            return [Reject(rid, "missing mask", item["mask"])]
        try:
            with Image.open(ctx.src / item["mask"]) as im:
                labels = np.asarray(im)
        except Exception as exc:
            return [Reject(rid, "unreadable mask", f"{item['mask']}: {exc}")]
        if labels.shape[:2] != (height, width):
            return [
                Reject(
                    rid,
                    "size mismatch",
                    f"mask {labels.shape[1]}x{labels.shape[0]}, image {width}x{height}",
                )
            ]
        outcomes: list[Outcome] = []
        values, counts = np.unique(labels, return_counts=True)
        unknown = [int(v) for v in values if int(v) not in LOVEDA_CLASSES and int(v) not in (0, 1)]
        if unknown:
            outcomes.append(Dropped(rid, "unknown class", f"mask values {unknown}"))
        present = {
            int(v): int(c) for v, c in zip(values, counts, strict=True) if int(v) in LOVEDA_CLASSES
        }
        common = {"source": self.info.name, "split": item["split"], "images": [item["image"]]}
        meta = {"width": width, "height": height, "domain": item["domain"], "gsd_m": 0.3}
        absent = stable_pick(f"{rid}:absent", [v for v in LOVEDA_CLASSES if v not in present], 1)
        for value in [*sorted(present), *absent]:
            label = LOVEDA_CLASSES[value]
            mask = labels == value
            answer, grid, iou = text_mask(mask)
            outcomes.append(
                make_record(
                    oid=f"{item['id']}:segment:{label}",
                    task="refer_seg",
                    argument=f"the {label}",
                    answer=answer,
                    targets={"mask": item["mask"], "mask_values": [value]},
                    meta={**meta, "mask_grid": grid, "mask_text_iou": iou},
                    **common,
                )
            )
        for value in sorted(present):
            share = present[value] / labels.size
            outcomes.append(
                make_record(
                    oid=f"{item['id']}:area:{LOVEDA_CLASSES[value]}",
                    task="vqa",
                    argument=f"What share of the image is {LOVEDA_CLASSES[value]}?",
                    answer="less than 1%" if share < 0.005 else f"{round(share * 100)}%",
                    qtype="area",
                    targets={"mask": item["mask"], "mask_values": [value]},
                    meta=meta,
                    **common,
                )
            )
        outcomes.append(
            make_record(
                oid=f"{item['id']}:domain",
                task="vqa",
                argument="Is this an urban or a rural area?",
                answer=item["domain"],
                qtype="rural_urban",
                meta=meta,
                **common,
            )
        )
        return outcomes


# --------------------------------------------------------------------------- RRSIS-D


class _PlainUnpickler:
    """Reads a pickle that holds only plain containers and scalars; any class or function reference is refused."""

    @staticmethod
    def load(path: Path) -> Any:
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module: str, name: str) -> Any:  # noqa: ARG002
                raise pickle.UnpicklingError(
                    f"{path.name} refers to {module}.{name}; only plain lists, dicts, strings and numbers are read"
                )

        with open(path, "rb") as f:
            return Restricted(f).load()


@register
class RRSISD(Recipe):
    """RRSIS-D: 17,402 referring expressions with instance masks on RSVGD images (referring segmentation).

    Layout (Lsan2401/RMSIN, REFER-style): ``rrsisd/refs(unc).p`` (the refs: ``ref_id``, ``ann_id``,
    ``image_id``, ``split``, ``sentences[].sent``), ``rrsisd/instances.json`` (COCO images,
    annotations with RLE or polygon ``segmentation`` and ``bbox``, categories) and images in
    ``images/rrsisd/JPEGImages/``. The refs pickle is read with an unpickler that accepts only
    plain lists, dicts, strings and numbers (any class reference is refused); a JSON copy
    ``refs(unc).json`` is read instead when present. Records per sentence: ``refer_seg``
    (text-as-mask answer, ``mask_rle`` target) and ``referring`` (the box). Checked against
    RMSIN's REFER loader; tested on fake files.
    """

    info = RecipeInfo(
        name="rrsis_d",
        title="RRSIS-D",
        tasks=("refer_seg", "referring"),
        licence="academic use (see RMSIN)",
        citation="S. Liu, Y. Ma, X. Zhang et al. Rotated Multi-Scale Interaction Network for Referring Remote Sensing Image Segmentation. CVPR 2024.",
        layout="rrsisd/refs(unc).p + rrsisd/instances.json + images/rrsisd/JPEGImages/",
        splits=("train", "val", "test"),
        checked_against="RMSIN refer/refer.py (REFER layout and fields); fake files",
        url="https://github.com/Lsan2401/RMSIN",
    )

    def _folder(self, src: Path) -> Path | None:
        for folder in (src / "rrsisd", src):
            if (folder / "instances.json").is_file() and (
                (folder / "refs(unc).p").is_file() or (folder / "refs(unc).json").is_file()
            ):
                return folder
        return None

    def check(self, src: Path) -> None:
        super().check(src)
        if self._folder(src) is None:
            raise DatasetNotFoundError(
                f"no rrsisd/refs(unc).p + rrsisd/instances.json under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return self._folder(src) is not None

    def _refs(self, folder: Path) -> list[dict[str, Any]]:
        if (folder / "refs(unc).json").is_file():
            return json.loads((folder / "refs(unc).json").read_text(encoding="utf-8"))
        import pickle

        try:
            return _PlainUnpickler.load(folder / "refs(unc).p")
        except pickle.UnpicklingError as exc:
            raise RecipeError(str(exc)) from None

    def available_splits(self, src: Path) -> list[str]:
        folder = self._folder(src)
        assert folder is not None
        return sorted(
            {str(r["split"]) for r in self._refs(folder)},
            key=lambda s: {"train": 0, "val": 1, "test": 2}.get(s, 3),
        )

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        folder = self._folder(src)
        assert folder is not None
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        instances = json.loads((folder / "instances.json").read_text(encoding="utf-8"))
        images = {im["id"]: im for im in instances.get("images", [])}
        annotations = {a["id"]: a for a in instances.get("annotations", [])}
        categories = {c["id"]: c["name"] for c in instances.get("categories", [])}
        image_dir = options.get("image_dir") or next(
            (d for d in ("images/rrsisd/JPEGImages", "JPEGImages", "images") if (src / d).is_dir()),
            "images/rrsisd/JPEGImages",
        )
        for ref in self._refs(folder):
            if str(ref["split"]) not in wanted:
                continue
            image = images.get(ref.get("image_id"))
            annotation = annotations.get(ref.get("ann_id"))
            for n, sentence in enumerate(ref.get("sentences", [])):
                yield {
                    "id": f"{ref['ref_id']}:{sentence.get('sent_id', n)}",
                    "split": str(ref["split"]),
                    "sentence": sentence.get("sent") or sentence.get("raw") or "",
                    "image": f"{image_dir}/{image['file_name']}" if image else None,
                    "annotation": annotation,
                    "category": categories.get(ref.get("category_id")),
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if item["image"] is None:
            return [Reject(rid, "missing image", "image id not in instances.json")]
        if item["annotation"] is None:
            return [Reject(rid, "malformed annotation", "ann id not in instances.json")]
        if not item["sentence"].strip():
            return [Reject(rid, "missing question", "empty sentence")]
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        width, height = size  # type: ignore[misc]
        annotation = item["annotation"]
        seg = annotation.get("segmentation")
        try:
            if isinstance(seg, dict):
                mask = rle_to_mask(seg)
            elif isinstance(seg, list) and seg and isinstance(seg[0], dict):
                mask = np.logical_or.reduce([rle_to_mask(s) for s in seg])
            elif isinstance(seg, list) and seg:
                mask = polygon_mask(seg, size)
            else:
                return [Reject(rid, "missing mask", "annotation has no segmentation")]
        except (ValueError, TypeError) as exc:
            return [Reject(rid, "unreadable mask", str(exc))]
        if mask.shape != (height, width):
            return [
                Reject(
                    rid,
                    "size mismatch",
                    f"mask {mask.shape[1]}x{mask.shape[0]}, image {width}x{height}",
                )
            ]
        x, y, w, h = (float(v) for v in annotation.get("bbox", [0, 0, 0, 0]))
        box = [x, y, x + w, y + h]
        answer, grid, iou = text_mask(mask)
        common = {"source": self.info.name, "split": item["split"], "images": [item["image"]]}
        meta = {"width": width, "height": height, "category": item["category"]}
        from geoassist.formats import format_box

        return [
            make_record(
                oid=item["id"],
                task="refer_seg",
                argument=item["sentence"].strip(),
                answer=answer,
                targets={
                    "mask_rle": mask_to_rle(mask),
                    "boxes": [{"label": item["sentence"].strip(), "box": box}],
                    "count": 1,
                },
                meta={**meta, "mask_grid": grid, "mask_text_iou": iou},
                **common,
            ),
            make_record(
                oid=f"{item['id']}:box",
                task="referring",
                argument=item["sentence"].strip(),
                answer=format_box(box, size),
                targets={"boxes": [{"label": item["sentence"].strip(), "box": box}], "count": 1},
                meta=meta,
                **common,
            ),
        ]
