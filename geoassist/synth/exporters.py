"""Writers for the published on-disk formats of real datasets.

Each exporter writes ``<out>/<format>/`` in the dataset's own layout and file
names, so that the readers in :mod:`geoassist.synth.readers` (and anything
written for the real data) read it unchanged:

==========  =====================================================================
rsvqa       RSVQA full release: ``USGS_split_<split>_{questions,answers,images}.json`` +
            ``Data/<id>.tif`` (HR); ``LR_split_<split>_*.json`` + ``Images_LR/<id>.tif`` (MS)
dota        DOTA v1.0: ``<split>/images/P0000.png``, ``<split>/labelTxt/P0000.txt``
dior        DIOR: ``JPEGImages-<split>/00001.jpg``, ``Annotations/Horizontal Bounding Boxes/``,
            ``Annotations/Oriented Bounding Boxes/``, ``ImageSets/Main/<split>.txt``
dior-rsvg   DIOR-RSVG: ``JPEGImages/``, ``Annotations/<n>.xml`` with ``<description>``,
            ``<split>.txt`` of object indices
levir-cd    LEVIR-CD: ``A/``, ``B/``, ``label/`` (0/255), ``list/<split>.txt``
levir-cc    LEVIR-CC: ``images/<split>/{A,B}/``, ``LevirCCcaptions.json`` (with ``changeflag``)
karpathy    UCM/RSICD/Sydney captions: ``dataset_geosynth.json`` + ``images/``
coco        iSAID: ``<split>/images/`` (+ ``_instance_color_RGB.png``, ``_instance_id_RGB.png``),
            ``<split>/Annotations/iSAID_<split>.json`` (COCO instances)
eurosat     EuroSAT-MS: ``ds/images/remote_sensing/otherDatasets/sentinel_2/tif/<Class>/<Class>_<n>.tif``,
            ``eurosat-<split>.txt``
folders     folder per class (RESISC45/AID): ``<class>/<class>_<n>.png``, ``geosynth-<split>.txt``
geotiff     HR or MS scenes as GeoTIFF with CRS and transform: ``<split>/<name>.tif``
geosynth    the full native annotation: ``<split>/<name>.json``
==========  =====================================================================
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from geoassist.readers.coco import ISAID_PALETTE
from geoassist.synth.encode import ISAID_CLASSES, Encoded
from geoassist.synth.text import name as cls_name
from geoassist.synth.types import FormatKindError, Pair, Scene

FORMATS = ["rsvqa", "dota", "dior", "dior-rsvg", "levir-cd", "levir-cc", "karpathy", "coco", "eurosat", "folders", "geotiff", "geosynth"]

DOTA_CLASSES = {
    "small_vehicle": "small-vehicle", "large_vehicle": "large-vehicle", "ship": "ship", "airplane": "plane",
    "storage_tank": "storage-tank", "tennis_court": "tennis-court", "soccer_field": "soccer-ball-field",
    "ground_track_field": "ground-track-field", "swimming_pool": "swimming-pool", "bridge": "bridge", "pier": "harbor",
}  # fmt: skip
DIOR_CLASSES = {
    "small_vehicle": "vehicle", "large_vehicle": "vehicle", "ship": "ship", "airplane": "airplane",
    "storage_tank": "storagetank", "tennis_court": "tenniscourt", "ground_track_field": "groundtrackfield",
    "bridge": "bridge", "pier": "harbor",
}  # fmt: skip

# rsvqa's date_added is a float timestamp; a fixed one keeps output byte-identical.
_DATE = 1700000000.0


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)


def _dump(path: Path, obj: Any) -> None:
    _write(path, json.dumps(obj, ensure_ascii=False))


class Exporter:
    """Base class: ``add`` one sample at a time, then ``close`` to write the index files."""

    name = ""
    kinds: tuple[str, ...] = ("hr", "ms")

    def __init__(self, root: Path, split: str, kind: str):
        if kind not in self.kinds:
            raise FormatKindError(f"format {self.name!r} does not fit kind {kind!r}: it takes {', '.join(self.kinds)} samples; drop it from --formats or choose --kind {self.kinds[0]}")
        self.root = Path(root) / self.name
        self.split, self.kind = split, kind

    def needs(self) -> set[str]:
        return set()

    def add(self, index: int, sample: Scene | Pair, enc: Encoded) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class RSVQAExporter(Exporter):
    name = "rsvqa"

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.images: list[dict] = []
        self.questions: list[dict] = []
        self.answers: list[dict] = []

    def needs(self) -> set[str]:
        return {"rgb.tif"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        a = sample.annotation
        folder = "Data" if self.kind == "hr" else "Images_LR"
        _write(self.root / folder / f"{index}.tif", enc.get("rgb.tif"))
        qids = []
        for qa in a.vqa:
            qid = len(self.questions)
            qids.append(qid)
            self.questions.append({"id": qid, "date_added": _DATE, "img_id": index, "people_id": 0, "type": qa.type, "question": qa.question, "answers_ids": [qid], "active": True})
            self.answers.append({"id": qid, "date_added": _DATE, "question_id": qid, "people_id": 0, "answer": qa.answer, "active": True})
        x0, y0 = a.geotransform[0], a.geotransform[3]
        res = f"{a.gsd_m:g}m"
        self.images.append({"id": index, "date_added": _DATE, "original_name": f"{a.scene_id}.tif", "sensor": "S2" if self.kind == "ms" else a.sensor, "upperleft_map_x": x0, "upperleft_map_y": y0, "res_x": res, "res_y": res, "people_id": 0, "type": "0", "questions_ids": qids, "active": True})

    def close(self) -> None:
        prefix = f"USGS_split_{self.split}" if self.kind == "hr" else f"LR_split_{self.split}"
        _dump(self.root / f"{prefix}_questions.json", {"questions": self.questions})
        _dump(self.root / f"{prefix}_answers.json", {"answers": self.answers})
        _dump(self.root / f"{prefix}_images.json", {"images": self.images})


# DOTA_devkit's image splitter keeps the part of a cut object inside the patch and marks it
# difficult "2" when that part is at most 70 % of the object; DOTA's labels keep every corner
# inside the image. The exports follow both rules (DIOR, a VOC format, sets <truncated>).
TRUNCATED_KEPT_FRACTION = 0.7
DOTA_TRUNCATED_DIFFICULT = 2


def _quad_from_five(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Four corners from five: the two ends of the shortest edge become its midpoint (as
    DOTA_devkit does for a rectangle with one corner cut off by the patch border)."""
    n = len(points)
    lengths = [
        ((points[i][0] - points[(i + 1) % n][0]) ** 2 + (points[i][1] - points[(i + 1) % n][1]) ** 2)
        for i in range(n)
    ]
    i = min(range(n), key=lengths.__getitem__)
    j = (i + 1) % n
    mid = ((points[i][0] + points[j][0]) / 2, (points[i][1] + points[j][1]) / 2)
    out = [p for k, p in enumerate(points) if k not in (i, j)]
    out.insert(min(i, j) if j != 0 else len(out), mid)
    return out


def clip_quad(
    corners: list[tuple[float, float]], width: float, height: float
) -> tuple[list[tuple[float, float]] | None, float]:
    """The part of a quadrilateral inside a ``width`` × ``height`` image, as four corners
    (clockwise on screen), and the fraction of its area kept; ``(None, 0.0)`` when nothing is
    inside. A part with more than five corners is given its bounding box within the image."""
    from shapely.geometry import Polygon
    from shapely.geometry import box as rectangle
    from shapely.geometry.polygon import orient

    def clamp(points):
        return [(min(max(x, 0.0), width), min(max(y, 0.0), height)) for x, y in points]

    if all(0 <= x <= width and 0 <= y <= height for x, y in corners):
        return list(corners), 1.0
    shape = Polygon(corners)
    if not shape.is_valid:
        shape = shape.buffer(0)
    inside = shape.intersection(rectangle(0, 0, width, height))
    if shape.area <= 0 or inside.is_empty or inside.area <= 0 or inside.geom_type != "Polygon":
        return None, 0.0
    kept = inside.area / shape.area
    points = list(orient(inside.simplify(0), sign=1.0).exterior.coords)[:-1]
    if len(points) == 5:
        points = _quad_from_five(points)
    elif len(points) != 4:
        x1, y1, x2, y2 = inside.bounds
        points = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    return clamp(points), kept


class DOTAExporter(Exporter):
    name = "dota"
    kinds = ("hr",)

    def needs(self) -> set[str]:
        return {"rgb.png"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        a = sample.annotation
        stem = f"P{index:04d}"
        _write(self.root / self.split / "images" / f"{stem}.png", enc.get("rgb.png"))
        lines = ["imagesource:GeoSynth", f"gsd:{a.gsd_m:g}"]
        for o in a.objects:
            if o.cls not in DOTA_CLASSES:
                continue
            quad, kept = clip_quad(o.obox.corners(), a.width, a.height)
            if quad is None:
                continue
            difficult = DOTA_TRUNCATED_DIFFICULT if kept <= TRUNCATED_KEPT_FRACTION else 0
            pts = " ".join(f"{_inside(x, a.width)} {_inside(y, a.height)}" for x, y in quad)
            lines.append(f"{pts} {DOTA_CLASSES[o.cls]} {difficult}")
        _write(self.root / self.split / "labelTxt" / f"{stem}.txt", "\n".join(lines) + "\n")


def _box_inside(box: list[float], width: float, height: float) -> list[float]:
    """A horizontal box cut to the image (VOC boxes, like every published label, stay inside)."""
    return [max(box[0], 0), max(box[1], 0), min(box[2], width), min(box[3], height)]


def _inside(value: float, limit: float) -> str:
    """A coordinate with one decimal that rounding cannot push past the image edge."""
    return f"{min(max(round(value, 1), 0.0), float(limit)):.1f}"


def _voc(filename: str, w: int, h: int, objects: list[str], database: str) -> str:
    return (
        f"<annotation>\n  <filename>{filename}</filename>\n  <source>\n    <database>{database}</database>\n  </source>\n"
        f"  <size>\n    <width>{w}</width>\n    <height>{h}</height>\n    <depth>3</depth>\n  </size>\n  <segmented>0</segmented>\n"
        + "".join(objects)
        + "</annotation>\n"
    )


def _bndbox(box: list[float]) -> str:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return f"    <bndbox>\n      <xmin>{x1}</xmin>\n      <ymin>{y1}</ymin>\n      <xmax>{x2}</xmax>\n      <ymax>{y2}</ymax>\n    </bndbox>\n"


class DIORExporter(Exporter):
    name = "dior"
    kinds = ("hr",)

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.ids: list[str] = []

    def needs(self) -> set[str]:
        return {"rgb.jpg"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        a = sample.annotation
        stem = f"{index + 1:05d}"
        _write(self.root / f"JPEGImages-{self.split}" / f"{stem}.jpg", enc.get("rgb.jpg"))
        hbb, obb = [], []
        for o in a.objects:
            if o.cls not in DIOR_CLASSES:
                continue
            c, kept = clip_quad(o.obox.corners(), a.width, a.height)
            x1, y1, x2, y2 = _box_inside(o.box, a.width, a.height)
            if c is None or x2 <= x1 or y2 <= y1:
                continue  # nothing of it inside the image
            truncated = int(kept < 1.0 or [x1, y1, x2, y2] != list(o.box))
            n = DIOR_CLASSES[o.cls]
            head = f"  <object>\n    <name>{n}</name>\n    <pose>Unspecified</pose>\n    <truncated>{truncated}</truncated>\n    <difficult>0</difficult>\n"
            hbb.append(head + _bndbox([x1, y1, x2, y2]) + "  </object>\n")
            keys = ["left_top", "right_top", "right_bottom", "left_bottom"]
            rob = "".join(f"      <x_{k}>{int(round(x))}</x_{k}>\n      <y_{k}>{int(round(y))}</y_{k}>\n" for k, (x, y) in zip(keys, c, strict=True))
            obb.append(head.replace("<pose>Unspecified</pose>\n", "") + f"    <type>robndbox</type>\n    <robndbox>\n{rob}    </robndbox>\n    <angle>{o.obox.angle_deg:.1f}</angle>\n  </object>\n")
        _write(self.root / "Annotations" / "Horizontal Bounding Boxes" / f"{stem}.xml", _voc(f"{stem}.jpg", a.width, a.height, hbb, "DIOR"))
        _write(self.root / "Annotations" / "Oriented Bounding Boxes" / f"{stem}.xml", _voc(f"{stem}.jpg", a.width, a.height, obb, "DIOR"))
        self.ids.append(stem)

    def close(self) -> None:
        _write(self.root / "ImageSets" / "Main" / f"{self.split}.txt", "".join(f"{i}\n" for i in self.ids))


class DIORRSVGExporter(Exporter):
    """One ``<object>`` per referring expression (the box of the object it names, looked up by id).

    ``<split>.txt`` lists *object* indices, not image numbers: 0-based positions in the
    objects of all ``Annotations/*.xml`` taken in file-name order, as the authors' loader
    counts them, so each line names one expression.
    """

    name = "dior-rsvg"
    kinds = ("hr",)

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.stems: list[str] = []

    def needs(self) -> set[str]:
        return {"rgb.jpg"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        a = sample.annotation
        stem = f"{index + 1:05d}"
        _write(self.root / "JPEGImages" / f"{stem}.jpg", enc.get("rgb.jpg"))
        objs = []
        for r in a.referring:
            o = a.object(r.object_id)
            objs.append(f"  <object>\n    <name>{escape(DIOR_CLASSES.get(o.cls, o.cls.replace('_', '')))}</name>\n" + _bndbox(_box_inside(o.box, a.width, a.height)) + f"    <description>{escape(r.text)}</description>\n  </object>\n")
        _write(self.root / "Annotations" / f"{stem}.xml", _voc(f"{stem}.jpg", a.width, a.height, objs, "DIOR"))
        self.stems.append(stem)

    def close(self) -> None:
        # Count over every annotation file present (another split's too), as a reader does.
        mine, indices, count = set(self.stems), [], 0
        for xml in sorted((self.root / "Annotations").glob("*.xml")):
            n = len(ET.parse(xml).getroot().findall("object"))
            if xml.stem in mine:
                indices += range(count, count + n)
            count += n
        _write(self.root / f"{self.split}.txt", "".join(f"{i}\n" for i in indices))


class LEVIRCDExporter(Exporter):
    name = "levir-cd"
    kinds = ("pair", "series")

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.names: list[str] = []

    def needs(self) -> set[str]:
        return {"A.png", "B.png", "label.png"}

    def add(self, index: int, sample: Pair, enc: Encoded) -> None:  # type: ignore[override]
        fname = f"{self.split}_{index}.png"
        for folder, key in (("A", "A.png"), ("B", "B.png"), ("label", "label.png")):
            _write(self.root / folder / fname, enc.get(key))
        self.names.append(fname)

    def close(self) -> None:
        _write(self.root / "list" / f"{self.split}.txt", "".join(f"{n}\n" for n in self.names))


def tokenize(sentence: str) -> list[str]:
    return [t for t in "".join(c if c.isalnum() or c == " " else " " for c in sentence.lower()).split() if t]


class LEVIRCCExporter(Exporter):
    name = "levir-cc"
    kinds = ("pair", "series")

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.images: list[dict] = []
        self.sentid = 0

    def needs(self) -> set[str]:
        return {"A.png", "B.png"}

    def add(self, index: int, sample: Pair, enc: Encoded) -> None:  # type: ignore[override]
        fname = f"{self.split}_{index:06d}.png"
        _write(self.root / "images" / self.split / "A" / fname, enc.get("A.png"))
        _write(self.root / "images" / self.split / "B" / fname, enc.get("B.png"))
        imgid = len(self.images)
        sents, ids = [], []
        for cap in sample.annotation.change_captions:
            sents.append({"tokens": tokenize(cap), "raw": " " + cap.rstrip(".") + " .", "imgid": imgid, "sentid": self.sentid})
            ids.append(self.sentid)
            self.sentid += 1
        self.images.append({"filepath": self.split, "filename": fname, "imgid": imgid, "sentences": sents, "split": self.split, "sentids": ids, "changeflag": int(sample.annotation.changed)})

    def close(self) -> None:
        _dump(self.root / "LevirCCcaptions.json", {"images": self.images})


class KarpathyExporter(Exporter):
    name = "karpathy"

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.images: list[dict] = []
        self.sentid = 0

    def needs(self) -> set[str]:
        return {"rgb.png"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        fname = f"{sample.annotation.scene_class}_{index}.png"
        _write(self.root / "images" / fname, enc.get("rgb.png"))
        sents, ids = [], []
        for cap in sample.annotation.captions:
            sents.append({"tokens": tokenize(cap), "raw": cap, "imgid": index, "sentid": self.sentid})
            ids.append(self.sentid)
            self.sentid += 1
        self.images.append({"filename": fname, "imgid": index, "sentences": sents, "split": self.split, "sentids": ids})

    def close(self) -> None:
        _dump(self.root / "dataset_geosynth.json", {"images": self.images, "dataset": "geosynth"})


class COCOExporter(Exporter):
    """iSAID's layout: COCO instances JSON plus its class-colour and instance-id PNGs."""

    name = "coco"
    kinds = ("hr",)

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        names = list(ISAID_PALETTE)
        self.cat_ids = {n: i + 1 for i, n in enumerate(names)}
        self.images: list[dict] = []
        self.annotations: list[dict] = []

    def needs(self) -> set[str]:
        return {"rgb.png", "isaid_color.png", "isaid_id.png"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        a = sample.annotation
        stem = f"P{index:04d}"
        img_dir = self.root / self.split / "images"
        _write(img_dir / f"{stem}.png", enc.get("rgb.png"))
        _write(img_dir / f"{stem}_instance_color_RGB.png", enc.get("isaid_color.png"))
        _write(img_dir / f"{stem}_instance_id_RGB.png", enc.get("isaid_id.png"))
        self.images.append({"id": index, "file_name": f"{stem}.png", "width": a.width, "height": a.height, "seg_file_name": f"{stem}_instance_color_RGB.png"})
        for o in a.things():
            if o.cls not in ISAID_CLASSES:
                continue
            x1, y1, x2, y2 = o.box
            seg = [round(v, 1) for xy in o.polygon for v in xy]
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": index, "category_id": self.cat_ids[ISAID_CLASSES[o.cls][0]], "segmentation": [seg], "area": float(o.area_px), "bbox": [x1, y1, x2 - x1, y2 - y1], "iscrowd": 0})

    def close(self) -> None:
        cats = [{"id": i, "name": n, "supercategory": n} for n, i in self.cat_ids.items()]
        _dump(self.root / self.split / "Annotations" / f"iSAID_{self.split}.json", {"images": self.images, "annotations": self.annotations, "categories": cats})


EUROSAT_DIR = Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif")


class EuroSATExporter(Exporter):
    name = "eurosat"
    kinds = ("ms",)

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.files: list[str] = []

    def needs(self) -> set[str]:
        return {"geo.tif"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        cls = sample.annotation.scene_class
        fname = f"{cls}_{index + 1}.tif"
        _write(self.root / EUROSAT_DIR / cls / fname, enc.get("geo.tif"))
        self.files.append(fname)

    def close(self) -> None:
        _write(self.root / f"eurosat-{self.split}.txt", "".join(f"{f}\n" for f in self.files))


class FoldersExporter(Exporter):
    name = "folders"

    def __init__(self, root: Path, split: str, kind: str):
        super().__init__(root, split, kind)
        self.files: list[str] = []

    def needs(self) -> set[str]:
        return {"rgb.png"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        cls = sample.annotation.scene_class
        rel = f"{cls}/{cls}_{index:05d}.png"
        _write(self.root / rel, enc.get("rgb.png"))
        self.files.append(rel)

    def close(self) -> None:
        _write(self.root / f"geosynth-{self.split}.txt", "".join(f"{f}\n" for f in self.files))


class GeoTIFFExporter(Exporter):
    name = "geotiff"

    def needs(self) -> set[str]:
        return {"geo.tif"}

    def add(self, index: int, sample: Scene, enc: Encoded) -> None:  # type: ignore[override]
        _write(self.root / self.split / f"{index:06d}.tif", enc.get("geo.tif"))


class NativeExporter(Exporter):
    name = "geosynth"
    kinds = ("hr", "ms", "pair", "series")

    def add(self, index: int, sample: Scene | Pair, enc: Encoded) -> None:
        _dump(self.root / self.split / f"{index:06d}.json", sample.annotation.to_dict())


EXPORTERS: dict[str, type[Exporter]] = {
    e.name: e
    for e in (RSVQAExporter, DOTAExporter, DIORExporter, DIORRSVGExporter, LEVIRCDExporter, LEVIRCCExporter, KarpathyExporter, COCOExporter, EuroSATExporter, FoldersExporter, GeoTIFFExporter, NativeExporter)
}


def make_exporters(root: Path, formats: list[str], split: str, kind: str) -> list[Exporter]:
    """Exporters for ``formats``; refuses an unknown format or one that does not fit ``kind``."""
    out = []
    for f in formats:
        if f not in EXPORTERS:
            from geoassist.synth.types import SynthError

            raise SynthError(f"unknown format {f!r}; choose from {', '.join(EXPORTERS)}")
        out.append(EXPORTERS[f](root, split, kind))
    return out


__all__ = ["EXPORTERS", "FORMATS", "make_exporters", "Exporter", "cls_name"]
