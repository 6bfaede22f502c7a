"""VOC-style XML: DIOR (horizontal ``bndbox`` and oriented ``robndbox``), DIOR-RSVG / RSVGD
(``<description>`` per object, split files of object indices), and FAIR1M's ``labelXml``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from geoassist.readers.common import DatasetFormatError, Malformed, need, number

_CORNERS = ("left_top", "right_top", "right_bottom", "left_bottom")


def _xml_root(path: Path, what: str) -> ET.Element:
    try:
        return ET.parse(need(Path(path), what)).getroot()
    except ET.ParseError as exc:
        raise DatasetFormatError(
            f"{path} ({what}) is not well-formed XML ({exc}); the file is truncated or damaged: copy it again from the release"
        ) from None


def _int(text: str | None) -> int | None:
    value = number(text)
    return int(value) if value is not None else None


def read_voc(path: str | Path) -> dict[str, Any]:
    """A VOC-style XML: ``filename``, ``width``, ``height`` (None when absent) and ``objects``.

    Each object has ``name`` and, where given and numeric, ``box`` ``[x1, y1, x2, y2]``
    (``bndbox``), ``polygon`` (``robndbox`` corners) and ``description``. An outline whose
    numbers are missing or not numbers is left out of the object and named in its
    ``malformed`` entry, so one bad object costs that object, not the file. A file that is not
    XML raises :class:`DatasetFormatError`.
    """
    root = _xml_root(Path(path), "VOC XML")
    size = root.find("size")
    out: dict[str, Any] = {
        "filename": root.findtext("filename"),
        "width": _int(size.findtext("width")) if size is not None else None,
        "height": _int(size.findtext("height")) if size is not None else None,
        "objects": [],
    }
    for o in root.iter("object"):
        d: dict[str, Any] = {"name": o.findtext("name")}
        bb = o.find("bndbox")
        if bb is not None:
            box = [number(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            if None in box:
                d["malformed"] = (
                    f"bndbox {[bb.findtext(k) for k in ('xmin', 'ymin', 'xmax', 'ymax')]} holds no four numbers"
                )
            else:
                d["box"] = box
        rb = o.find("robndbox")
        if rb is not None:
            corners = [
                (number(rb.findtext(f"x_{k}")), number(rb.findtext(f"y_{k}"))) for k in _CORNERS
            ]
            if any(v is None for c in corners for v in c):
                d["malformed"] = "robndbox corners are missing or not numbers"
            else:
                d["polygon"] = corners
        if o.find("description") is not None:
            d["description"] = (o.findtext("description") or "").strip()
        out["objects"].append(d)
    return out


def read_dior(
    root: str | Path, split: str, oriented: bool = False
) -> list[tuple[Path, dict[str, Any]]]:
    """DIOR: ``(image path, parsed XML)`` for the ids in ``ImageSets/Main/<split>.txt``."""
    root = Path(root)
    ids = need(root / "ImageSets" / "Main" / f"{split}.txt", "DIOR split list").read_text().split()
    ann = (
        root
        / "Annotations"
        / ("Oriented Bounding Boxes" if oriented else "Horizontal Bounding Boxes")
    )
    img_dirs = [d for d in root.glob("JPEGImages*") if d.is_dir()]
    out = []
    for i in ids:
        img = next(
            (d / f"{i}.jpg" for d in img_dirs if (d / f"{i}.jpg").exists()),
            root / f"JPEGImages-{split}" / f"{i}.jpg",
        )
        out.append((img, read_voc(ann / f"{i}.xml")))
    return out


def read_object_index_split(path: Path) -> list[int]:
    """A DIOR-RSVG split file: object indices (integers), one per line."""
    try:
        return [int(t) for t in need(path, "DIOR-RSVG split list").read_text().split()]
    except ValueError as exc:
        raise DatasetFormatError(
            f"{path} must list object indices (integers), one per line: {exc}"
        ) from None


def read_dior_rsvg(root: str | Path, split: str) -> list[dict[str, Any]]:
    """DIOR-RSVG: one item per referring expression of ``<split>.txt``: index, image path, class, box, description.

    The split file lists *object* indices: 0-based positions in the objects of all
    ``Annotations/*.xml`` taken in file-name order (the authors' loader counts them so),
    not image numbers. Items come in that order.
    """
    root = Path(root)
    split_file = root / f"{split}.txt"
    wanted = set(read_object_index_split(split_file))
    out, count = [], 0
    for xml in sorted(need(root / "Annotations", "DIOR-RSVG Annotations folder").glob("*.xml")):
        x = read_voc(xml)
        for o in x["objects"]:
            if count in wanted:
                image = root / "JPEGImages" / (x["filename"] or f"{xml.stem}.jpg")
                out.append(
                    {
                        "index": count,
                        "image_path": image,
                        "cls": o["name"],
                        "box": o.get("box"),
                        "description": o.get("description", ""),
                    }
                )
            count += 1
    missing = sorted(i for i in wanted if i >= count)
    if missing:
        raise DatasetFormatError(
            f"{split_file} lists object indices {missing[:5]} but Annotations/ holds {count} objects; the split file and the annotations do not belong together"
        )
    return out


def read_fair1m_xml(path: str | Path) -> tuple[list[dict[str, Any]], list[Malformed]]:
    """A FAIR1M ``labelXml`` file: objects ``{"name", "points"}`` (the closing point dropped) and the unreadable ones.

    Each ``<object>`` names its class in ``possibleresult/name`` and its outline in
    ``points/point`` as ``x,y`` text. A file that is not XML raises :class:`DatasetFormatError`.
    """
    path = Path(path)
    root = _xml_root(path, "FAIR1M label XML")
    objects: list[dict[str, Any]] = []
    bad: list[Malformed] = []
    for n, obj in enumerate(root.iter("object")):
        name = (obj.findtext("possibleresult/name") or "").strip()
        points = [[number(v) for v in p.text.split(",")] for p in obj.iter("point") if p.text]
        if any(v is None for p in points for v in p):
            points = []
        if len(points) >= 2 and points[0] == points[-1]:
            points = points[:-1]
        if not name or len(points) < 3 or any(len(p) != 2 for p in points):
            bad.append(
                Malformed(
                    f"{path.name}#{n}",
                    "malformed annotation",
                    f"object {n}: class {name!r}, {len(points)} points",
                )
            )
            continue
        objects.append({"name": name, "points": points})
    return objects, bad
