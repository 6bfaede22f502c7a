"""Objects → detection, grounding, counting, presence, referring, region captions, B2C captions.

DOTA v1.0/v1.5/v2.0 (``labelTxt``), DIOR (VOC XML, horizontal and oriented), FAIR1M (XML),
DIOR-RSVG and RSVG (referring expressions in VOC-style XML).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geoassist.readers import DatasetFormatError, parse_dota_label, read_fair1m_xml, read_voc
from geoassist.readers.dota import find_image
from geoassist.readers.voc import read_object_index_split

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
from ..geometry import box_of_points, label_name
from ..tasks import check_objects, object_records

# --------------------------------------------------------------------------- DOTA

DOTA_V1_CLASSES = (
    "plane",
    "ship",
    "storage-tank",
    "baseball-diamond",
    "tennis-court",
    "basketball-court",
    "ground-track-field",
    "harbor",
    "bridge",
    "large-vehicle",
    "small-vehicle",
    "helicopter",
    "roundabout",
    "soccer-ball-field",
    "swimming-pool",
)
DOTA_V15_CLASSES = (*DOTA_V1_CLASSES, "container-crane")
DOTA_V2_CLASSES = (*DOTA_V15_CLASSES, "airport", "helipad")

_DOTA_CITATION = (
    "G.-S. Xia, X. Bai, J. Ding et al. DOTA: A Large-scale Dataset for Object Detection in Aerial Images. CVPR 2018; "
    "J. Ding, N. Xue, G.-S. Xia et al. Object Detection in Aerial Images: A Large-Scale Benchmark and Challenges. TPAMI 2021."
)
_DOTA_LABEL_DIRS = ("labelTxt", "labelTxt-v1.0", "labelTxt-v1.5", "labelTxt-v2.0")


def _find_image(folder: Path, stem: str) -> str | None:
    found = find_image(folder, stem)
    return found.name if found else None


class _DOTA(Recipe):
    classes: tuple[str, ...] = DOTA_V1_CLASSES

    def _label_dir(self, base: Path) -> Path | None:
        for name in _DOTA_LABEL_DIRS:
            folder = base / name
            if folder.is_dir():
                if any(folder.glob("*.txt")):
                    return folder
                subs = [d for d in sorted(folder.iterdir()) if d.is_dir() and any(d.glob("*.txt"))]
                if len(subs) == 1:
                    return subs[0]
        return None

    def _splits(self, src: Path) -> dict[str, Path]:
        if not src.is_dir():
            return {}
        if (src / "images").is_dir() and self._label_dir(src):
            return {"all": src}
        return {
            d.name: d
            for d in sorted(src.iterdir())
            if d.is_dir() and (d / "images").is_dir() and self._label_dir(d)
        }

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._splits(src):
            raise DatasetNotFoundError(
                f"no images/ + labelTxt/ under {src} or its split folders; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        splits = self._splits(src)
        if not splits:
            return False
        label_dir = self._label_dir(next(iter(splits.values())))
        first = next(iter(sorted(label_dir.glob("*.txt"))), None) if label_dir else None
        if first is None:
            return False
        _, objects, _ = parse_dota_label(first.read_text(errors="replace").splitlines()[:50])
        return (
            bool(objects) and self.info.name == "dota"
        )  # the versions share a layout: v1.0 is the default

    def available_splits(self, src: Path) -> list[str]:
        return list(self._splits(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        found = self._splits(src)
        for split in split_filter(splits, list(found), self.info.name):
            base = found[split]
            label_dir = self._label_dir(base)
            assert label_dir is not None
            prefix = "" if base == src else f"{base.name}/"
            for label in sorted(label_dir.glob("*.txt")):
                image = _find_image(base / "images", label.stem)
                yield {
                    "id": label.stem,
                    "split": split,
                    "label": label.relative_to(src).as_posix(),
                    "image": f"{prefix}images/{image}" if image else None,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if item["image"] is None:
            return [Reject(rid, "missing image", f"no image for {item['label']}")]
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        header, raw, bad = parse_dota_label(
            (ctx.src / item["label"]).read_text(encoding="utf-8", errors="replace").splitlines()
        )
        outcomes: list[Outcome] = [Dropped(rid, b.reason, b.detail) for b in bad]
        objects = [
            {
                "class": o.cls,
                "points": [list(p) for p in o.polygon],
                "difficult": o.difficult,
                "line": o.line,
                "label": label_name(o.cls),
                "box": o.box,
            }
            for o in raw
        ]
        kept, dropped = check_objects(rid, objects, size, self.classes)
        outcomes += dropped
        gsd = header.get("gsd")
        meta = {
            "gsd_m": float(gsd) if gsd and gsd.replace(".", "", 1).isdigit() else None,
            "imagesource": header.get("imagesource"),
            "label_file": item["label"],
        }
        outcomes += object_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            size=size,
            objects=kept,
            class_labels=[label_name(c) for c in self.classes],
            meta=meta,
            oriented=True,
        )
        return outcomes


@register
class DOTA(_DOTA):
    """DOTA v1.0: aerial images (800–4000 px) with oriented boxes of 15 classes.

    Layout (CAPTAIN-WHU release): ``{train,val}/images/P0000.png`` and
    ``{train,val}/labelTxt/P0000.txt`` (``labelTxt-v1.0/`` accepted), or ``images/`` +
    ``labelTxt/`` at the root (split ``all``). Label files: optional ``imagesource:`` and
    ``gsd:`` header lines, then ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` per object.
    Targets keep each quadrilateral (``obboxes``) and its enclosing box (``boxes``, with
    ``difficult``); detection answers use ``<obox>`` (min-area rectangle of the quad).
    Checked against ``rs-samples/dota`` (P1888) and DOTA_devkit's parser.
    """

    info = RecipeInfo(
        name="dota",
        title="DOTA v1.0",
        tasks=(
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
        ),
        licence="academic use only (DOTA terms); images from Google Earth, GF-2, JL-1",
        citation=_DOTA_CITATION,
        layout="{train,val}/images/<id>.png + {train,val}/labelTxt/<id>.txt ('x1 y1 … x4 y4 class difficult')",
        splits=("train", "val"),
        checked_against="real files: rs-samples/dota (P1888); DOTA_devkit label format",
        url="https://captain-whu.github.io/DOTA/",
    )


@register
class DOTAV15(_DOTA):
    """DOTA v1.5: the v1.0 images with tiny instances labelled too and a 16th class, container crane.

    Same layout as ``dota`` (labels usually unpacked as ``labelTxt-v1.5/DOTA-v1.5_<split>/``,
    which is read when it is the only folder inside ``labelTxt-v1.5``). Tested on fake files.
    """

    info = RecipeInfo(
        name="dota_v15",
        title="DOTA v1.5",
        tasks=DOTA.info.tasks,
        licence=DOTA.info.licence,
        citation=_DOTA_CITATION,
        layout="{train,val}/images/ + {train,val}/labelTxt-v1.5/[DOTA-v1.5_<split>/]<id>.txt",
        splits=("train", "val"),
        checked_against="DOTA v1.5 release notes (class list, label format as v1.0); fake files",
        url="https://captain-whu.github.io/DOTA/",
    )
    classes = DOTA_V15_CLASSES


@register
class DOTAV2(_DOTA):
    """DOTA v2.0: 18 classes (v1.5 plus airport and helipad) over more images.

    Same layout as ``dota`` (``labelTxt-v2.0/`` accepted). Tested on fake files.
    """

    info = RecipeInfo(
        name="dota_v2",
        title="DOTA v2.0",
        tasks=DOTA.info.tasks,
        licence=DOTA.info.licence,
        citation=_DOTA_CITATION,
        layout="{train,val}/images/ + {train,val}/labelTxt-v2.0/[DOTA-v2.0_<split>/]<id>.txt",
        splits=("train", "val"),
        checked_against="DOTA v2.0 release notes (class list, label format as v1.0); fake files",
        url="https://captain-whu.github.io/DOTA/",
    )
    classes = DOTA_V2_CLASSES


# --------------------------------------------------------------------------- DIOR

DIOR_CLASSES = {
    "airplane": "airplane",
    "airport": "airport",
    "baseballfield": "baseball field",
    "basketballcourt": "basketball court",
    "bridge": "bridge",
    "chimney": "chimney",
    "dam": "dam",
    "expressway-service-area": "expressway service area",
    "expressway-toll-station": "expressway toll station",
    "golffield": "golf field",
    "groundtrackfield": "ground track field",
    "harbor": "harbor",
    "overpass": "overpass",
    "ship": "ship",
    "stadium": "stadium",
    "storagetank": "storage tank",
    "tenniscourt": "tennis court",
    "trainstation": "train station",
    "vehicle": "vehicle",
    "windmill": "windmill",
}


@register
class DIOR(Recipe):
    """DIOR (and DIOR-R): 23,463 optical images (800², 0.5–30 m) with 20 classes, horizontal and oriented boxes.

    Layout (release): ``JPEGImages-trainval/`` and ``JPEGImages-test/`` (``<id>.jpg``),
    ``Annotations/Horizontal Bounding Boxes/<id>.xml`` (VOC ``bndbox``) and, for DIOR-R,
    ``Annotations/Oriented Bounding Boxes/<id>.xml`` (``robndbox`` with ``x_left_top``…
    corners), ``ImageSets/Main/{train,val,test}.txt``. Class names are matched without case
    (``Expressway-Service-area``). Records: the object records on the horizontal boxes and,
    when the oriented XML is there, a ``detection_obb`` record per image. Checked against the
    layout mmrotate's and OBBDetection's DIOR loaders read; tested on GeoSynth's DIOR export
    and hand-made files.
    """

    info = RecipeInfo(
        name="dior",
        title="DIOR / DIOR-R",
        tasks=(
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
        ),
        licence="academic use (DIOR terms)",
        citation="K. Li, G. Wan, G. Cheng, L. Meng, J. Han. Object detection in optical remote sensing images: A survey and a new benchmark. ISPRS J. 159, 2020.",
        layout="JPEGImages-{trainval,test}/<id>.jpg + Annotations/{Horizontal,Oriented} Bounding Boxes/<id>.xml + ImageSets/Main/<split>.txt",
        splits=("train", "val", "test"),
        checked_against="mmrotate / OBBDetection DIOR loaders' layout; fake files",
        url="https://gcheng-nwpu.github.io/",
    )

    def _splits(self, src: Path) -> dict[str, Path]:
        folder = src / "ImageSets" / "Main"
        found = {p.stem: p for p in sorted(folder.glob("*.txt"))} if folder.is_dir() else {}
        if "trainval" in found and ("train" in found or "val" in found):
            found.pop("trainval")
        return found

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._splits(src) or not (src / "Annotations").is_dir():
            raise DatasetNotFoundError(
                f"no ImageSets/Main/<split>.txt and Annotations/ in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return (
            bool(self._splits(src)) and (src / "Annotations" / "Horizontal Bounding Boxes").is_dir()
        )

    def available_splits(self, src: Path) -> list[str]:
        return list(self._splits(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        found = self._splits(src)
        image_dirs = sorted(d.name for d in src.glob("JPEGImages*") if d.is_dir())
        for split in split_filter(splits, list(found), self.info.name):
            for image_id in found[split].read_text().split():
                image = next(
                    (
                        f"{d}/{image_id}.jpg"
                        for d in image_dirs
                        if (src / d / f"{image_id}.jpg").is_file()
                    ),
                    None,
                )
                yield {"id": image_id, "split": split, "image": image}

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if item["image"] is None:
            return [Reject(rid, "missing image", f"{item['id']}.jpg in no JPEGImages* folder")]
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        hbb = ctx.src / "Annotations" / "Horizontal Bounding Boxes" / f"{item['id']}.xml"
        obb = ctx.src / "Annotations" / "Oriented Bounding Boxes" / f"{item['id']}.xml"
        if not hbb.is_file():
            return [Reject(rid, "malformed annotation", f"missing {hbb.relative_to(ctx.src)}")]
        outcomes: list[Outcome] = []
        try:
            horizontal = read_voc(hbb)["objects"]
            oriented = read_voc(obb)["objects"] if obb.is_file() else None
        except DatasetFormatError as exc:
            return [Reject(rid, "malformed annotation", str(exc))]
        classes = {k.lower(): v for k, v in DIOR_CLASSES.items()}

        def objects_of(raw: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
            out = []
            for n, o in enumerate(raw):
                name = str(o.get("name") or "").strip()
                if key not in o:
                    detail = o.get("malformed") or f"has no {key}"
                    outcomes.append(Dropped(rid, "malformed annotation", f"object {n} {detail}"))
                    continue
                label = classes.get(name.lower())
                obj = {
                    "class": name,
                    "label": label or name,
                    "box": o["box"] if key == "box" else box_of_points(o["polygon"]),
                }
                if key == "polygon":
                    obj["points"] = [list(p) for p in o["polygon"]]
                out.append(obj)
            return out

        known = list(DIOR_CLASSES) + [
            k for k in (o.get("name") for o in horizontal) if k and k.lower() in classes
        ]
        kept, dropped = check_objects(rid, objects_of(horizontal, "box"), size, known)
        outcomes += dropped
        outcomes += object_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            size=size,
            objects=kept,
            class_labels=list(DIOR_CLASSES.values()),
        )
        if oriented is not None:
            from ..tasks import obb_detection_record

            raw_obb = objects_of(oriented, "polygon")
            kept_obb, dropped_obb = check_objects(
                f"{rid}:obb",
                raw_obb,
                size,
                known + [o["class"] for o in raw_obb if o["class"].lower() in classes],
            )
            outcomes += dropped_obb
            outcomes.append(
                obb_detection_record(
                    source=self.info.name,
                    oid=item["id"],
                    split=item["split"],
                    image=item["image"],
                    size=size,
                    objects=kept_obb,
                )
            )
        return outcomes


# --------------------------------------------------------------------------- FAIR1M


@register
class FAIR1M(Recipe):
    """FAIR1M: fine-grained oriented objects (37 types of planes, ships, vehicles, courts, roads) in GF images.

    Layout (release): ``train/part*/images/<n>.tif`` with ``train/part*/labelXml/<n>.xml``
    (``validation/`` likewise; any folder holding ``images/`` + ``labelXml/`` is read, the split
    being the top folder). Each ``<object>`` names its class in ``possibleresult/name`` and its
    outline in ``points/point`` (``x,y`` pairs, the first repeated at the end). Records: object
    records with oriented targets and ``<obox>`` detection. Checked against the FAIR1M XML
    schema described with the dataset (ISPRS 2022) and loaders converting it to DOTA; tested on
    fake files.
    """

    info = RecipeInfo(
        name="fair1m",
        title="FAIR1M",
        tasks=(
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
        ),
        licence="academic use (FAIR1M / Gaofen challenge terms)",
        citation="X. Sun, P. Wang, Z. Yan et al. FAIR1M: A benchmark dataset for fine-grained object recognition in high-resolution remote sensing imagery. ISPRS J. 184, 2022.",
        layout="<split>/[part*/]images/<n>.tif + <split>/[part*/]labelXml/<n>.xml",
        splits=("train", "validation"),
        checked_against="FAIR1M XML schema (possibleresult/name, points/point); fake files",
        url="https://www.gaofen-challenge.com/benchmark",
    )

    def _folders(self, src: Path) -> list[Path]:
        return (
            sorted(
                p.parent
                for p in src.rglob("labelXml")
                if p.is_dir() and (p.parent / "images").is_dir()
            )
            if src.is_dir()
            else []
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._folders(src):
            raise DatasetNotFoundError(
                f"no images/ + labelXml/ folders under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return bool(self._folders(src))

    def _split_of(self, src: Path, folder: Path) -> str:
        rel = folder.relative_to(src)
        return rel.parts[0] if rel.parts else "all"

    def available_splits(self, src: Path) -> list[str]:
        return sorted({self._split_of(src, f) for f in self._folders(src)})

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        for folder in self._folders(src):
            split = self._split_of(src, folder)
            if split not in wanted:
                continue
            for xml in sorted((folder / "labelXml").glob("*.xml")):
                image = _find_image(folder / "images", xml.stem)
                prefix = folder.relative_to(src).as_posix()
                prefix = f"{prefix}/" if prefix != "." else ""
                yield {
                    "id": f"{prefix}{xml.stem}",
                    "split": split,
                    "xml": xml.relative_to(src).as_posix(),
                    "image": f"{prefix}images/{image}" if image else None,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if item["image"] is None:
            return [Reject(rid, "missing image", f"no image for {item['xml']}")]
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        try:
            found, bad = read_fair1m_xml(ctx.src / item["xml"])
        except DatasetFormatError as exc:
            return [Reject(rid, "malformed annotation", str(exc))]
        outcomes: list[Outcome] = [Dropped(rid, b.reason, b.detail) for b in bad]
        objects = [
            {
                "class": o["name"],
                "label": label_name(o["name"]),
                "box": box_of_points(o["points"]),
                "points": o["points"][:4] if len(o["points"]) >= 4 else o["points"],
            }
            for o in found
        ]
        kept, dropped = check_objects(rid, objects, size)
        outcomes += dropped
        labels = sorted({o["label"] for o in kept})
        outcomes += object_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            size=size,
            objects=kept,
            class_labels=labels,
            oriented=True,
            n_negatives=0,
        )
        return outcomes


# --------------------------------------------------------------------------- DIOR-RSVG, RSVGD


class _VOCReferring(Recipe):
    """VOC-style XML with a ``<description>`` per object; split files list global object indices."""

    def _annotations(self, src: Path) -> list[Path]:
        return sorted((src / "Annotations").glob("*.xml")) if (src / "Annotations").is_dir() else []

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._annotations(src) or not (src / "JPEGImages").is_dir():
            raise DatasetNotFoundError(
                f"no Annotations/*.xml and JPEGImages/ in {src}; expected {self.info.layout}"
            )

    def available_splits(self, src: Path) -> list[str]:
        found = [s for s in ("train", "val", "test") if (src / f"{s}.txt").is_file()]
        return found or ["all"]

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        available = self.available_splits(src)
        wanted = split_filter(splits, available, self.info.name)
        index_split: dict[int, str] = {}
        if available != ["all"]:
            for split in available:
                for index in read_object_index_split(src / f"{split}.txt"):
                    index_split[index] = split
        count = 0
        for xml in self._annotations(src):
            try:
                voc = read_voc(xml)
            except DatasetFormatError as exc:
                # The split files count objects over every file in order: a file whose objects
                # cannot be counted would shift every later index onto the wrong expression.
                raise DatasetFormatError(
                    f"{exc} (the split files number objects across all of Annotations/, so no "
                    "later index can be placed without it)"
                ) from None
            filename = voc["filename"] or f"{xml.stem}.jpg"
            objects = []
            for obj in voc["objects"]:
                objects.append(
                    {
                        "index": count,
                        "name": obj["name"],
                        "box": obj.get("box"),
                        "description": obj.get("description", ""),
                    }
                )
                count += 1
            for obj in objects:
                split = index_split.get(obj["index"], "all" if available == ["all"] else None)
                if split is None or split not in wanted:
                    continue
                yield {
                    "id": str(obj["index"]),
                    "split": split,
                    "image": f"JPEGImages/{filename}",
                    "object": obj,
                    "others": [
                        {"name": o["name"], "box": o["box"]} for o in objects if o is not obj
                    ],
                    "xml": xml.name,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        obj = item["object"]
        if not obj["description"]:
            return [Reject(rid, "missing question", "object has no <description>")]
        box = obj["box"]
        if box is None:
            return [Reject(rid, "malformed annotation", "object has no bndbox")]
        kept, dropped = check_objects(
            rid,
            [
                {
                    "class": obj["name"],
                    "label": label_name(
                        DIOR_CLASSES.get(str(obj["name"]).lower(), str(obj["name"]))
                    ),
                    "box": box,
                }
            ],
            size,
        )
        if not kept:
            return [Reject(rid, d.reason, d.detail) for d in dropped]
        target = kept[0]
        common = {
            "source": self.info.name,
            "split": item["split"],
            "images": [item["image"]],
            "meta": {"width": size[0], "height": size[1], "class": obj["name"], "xml": item["xml"]},
        }
        from geoassist.formats import format_box

        outcomes: list[Outcome] = [
            make_record(
                oid=item["id"],
                task="referring",
                argument=obj["description"],
                answer=format_box(target["box"], size),
                targets={
                    "boxes": [
                        {"label": obj["description"], "box": target["box"], "class": obj["name"]}
                    ],
                    "count": 1,
                },
                **common,
            ),
            make_record(
                oid=f"{item['id']}:region",
                task="region_caption",
                region=format_box(target["box"], size),
                answer=obj["description"][0].upper() + obj["description"][1:],
                targets={
                    "boxes": [
                        {"label": obj["description"], "box": target["box"], "class": obj["name"]}
                    ],
                    "count": 1,
                },
                **common,
            ),
        ]
        # a negative: the same words about a class this image does not show are answered "none"
        present = {str(o["name"]).lower() for o in [obj, *item["others"]]}
        absent = [c for c in DIOR_CLASSES if c not in present]
        if absent and str(obj["name"]).lower() in DIOR_CLASSES:
            other = DIOR_CLASSES[stable_pick(f"{rid}:absent", absent, 1)[0]]
            phrase = (
                obj["description"].lower().replace(DIOR_CLASSES[str(obj["name"]).lower()], other)
            )
            if phrase != obj["description"].lower():
                outcomes.append(
                    make_record(
                        oid=f"{item['id']}:none",
                        task="referring",
                        argument=phrase,
                        answer="none",
                        targets={"boxes": [], "count": 0},
                        **common,
                    )
                )
        return outcomes


@register
class DIORRSVG(_VOCReferring):
    """DIOR-RSVG: 38,320 referring expressions over 17,402 DIOR images (box + description per object).

    Layout (ZhanYang-nwpu/RSVG-pytorch): ``Annotations/<id>.xml`` (VOC with a ``<description>``
    per ``<object>``), ``JPEGImages/<id>.jpg``, and ``{train,val,test}.txt`` listing *object*
    indices counted over all objects of the annotation files in file-name order, as the
    authors' loader counts them. Records: ``referring`` (expression → box), the reverse
    ``region_caption`` (box → expression), and a negative whose class word is swapped for one
    absent from the image (answer ``none``). Checked against the authors' data loader and
    their sample annotation; tested on fake files.
    """

    info = RecipeInfo(
        name="dior_rsvg",
        title="DIOR-RSVG",
        tasks=("referring", "region_caption"),
        licence="academic use (DIOR terms)",
        citation="Y. Zhan, Z. Xiong, Y. Yuan. RSVG: Exploring Data and Models for Visual Grounding on Remote Sensing Data. IEEE TGRS 61, 2023.",
        layout="Annotations/<id>.xml (bndbox + description) + JPEGImages/<id>.jpg + {train,val,test}.txt (object indices)",
        splits=("train", "val", "test"),
        checked_against="RSVG-pytorch data_loader.py and RSVGD/Annotations/00001.xml; fake files",
        url="https://github.com/ZhanYang-nwpu/RSVG-pytorch",
    )

    def detect(self, src: Path) -> bool:
        files = self._annotations(src)
        return (
            bool(files)
            and "<description>" in files[0].read_text(errors="replace")
            and self.info.name == "dior_rsvg"
        )


@register
class RSVG(_VOCReferring):
    """RSVG(D): the visual-grounding set distributed with RSVG-pytorch as ``RSVGD/`` (same schema as DIOR-RSVG).

    Layout: ``Annotations/*.xml`` with ``<description>``, ``JPEGImages/``, ``{train,val,test}.txt``
    of object indices (or no split files: split ``all``). Records as ``dior_rsvg``. Checked
    against the RSVGD files in RSVG-pytorch; tested on fake files.
    """

    info = RecipeInfo(
        name="rsvg",
        title="RSVG (RSVGD)",
        tasks=("referring", "region_caption"),
        licence="academic use",
        citation="Y. Zhan, Z. Xiong, Y. Yuan. RSVG: Exploring Data and Models for Visual Grounding on Remote Sensing Data. IEEE TGRS 61, 2023; Y. Sun, S. Feng, X. Li et al. Visual Grounding in Remote Sensing Images. ACM MM 2022.",
        layout="Annotations/<id>.xml (bndbox + description) + JPEGImages/ + [{train,val,test}.txt]",
        splits=("train", "val", "test"),
        checked_against="RSVG-pytorch RSVGD/ split files and annotation; fake files",
        url="https://github.com/ZhanYang-nwpu/RSVG-pytorch",
    )
