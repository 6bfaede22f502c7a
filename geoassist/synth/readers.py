"""Readers for the published formats that GeoSynth writes — and that the real datasets use.

Every function takes the dataset's root folder (or one file) as its authors lay
it out and returns plain dataclasses or dicts with pixel coordinates; nothing
here knows about GeoSynth, so the data recipes use the same functions on the
real releases. Boxes are ``[x1, y1, x2, y2]`` floats.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import GeoAssistError


class DatasetFormatError(GeoAssistError, ValueError):
    """A dataset folder or file is missing or does not follow its published format."""


def _need(path: Path, what: str) -> Path:
    if not path.exists():
        raise DatasetFormatError(f"{what} not found at {path}; point the reader at the dataset's root folder as published")
    return path


# --------------------------------------------------------------------------- RSVQA


@dataclass
class RSVQAItem:
    question_id: int
    image_id: int
    image_path: Path | None
    question: str
    answer: str
    type: str


_RSVQA_PATTERNS = [
    ("{split}", "USGS_split_{split}_{what}.json"),
    ("{split}", "USGS_split_{split}_{what}_reduced.json"),
    ("{split}", "LR_split_{split}_{what}.json"),
    ("", "{what}S2_reduced.json"),
    ("", "{what}S2.json"),
]


def rsvqa_files(root: Path, split: str | None = None) -> dict[str, Path]:
    """The questions/answers/images JSON of an RSVQA folder, in either naming.

    Accepts the full release (``USGS_split_<split>_questions.json``,
    ``LR_split_<split>_questions.json``) and the author-site excerpts
    (``USGS_split_<split>_questions_reduced.json``, ``questionsS2_reduced.json``).
    With ``split=None`` the only split present is used.
    """
    root = _need(Path(root), "RSVQA folder")
    names = sorted(p.name for p in root.glob("*.json"))
    for _, pattern in _RSVQA_PATTERNS:
        regex = re.escape(pattern).replace(re.escape("{split}"), r"(?P<split>[A-Za-z0-9]+)").replace(re.escape("{what}"), "questions")
        for n in names:
            m = re.fullmatch(regex, n)
            if m and (split is None or m.groupdict().get("split", split) == split):
                found = {w: root / n.replace("questions", w) for w in ("questions", "answers", "images")}
                if all(p.exists() for p in found.values()):
                    return found
    raise DatasetFormatError(f"no RSVQA questions/answers/images JSON for split {split!r} in {root}")


def _rsvqa_image(root: Path, image_id: int) -> Path | None:
    for rel in (f"images/{image_id}.png", f"Images_LR/{image_id}.tif", f"Data/{image_id}.tif", f"Images_LR/{image_id}.png", f"Data/{image_id}.png"):
        if (root / rel).exists():
            return root / rel
    return None


def read_rsvqa(root: str | Path, split: str | None = None, active_only: bool = True) -> list[RSVQAItem]:
    """Question–answer items of an RSVQA (LR or HR) folder; ``image_path`` is None where the image is absent."""
    root = Path(root)
    files = rsvqa_files(root, split)
    questions = json.loads(files["questions"].read_text())["questions"]
    answers = {a["id"]: a for a in json.loads(files["answers"].read_text())["answers"]}
    images = {i["id"]: i for i in json.loads(files["images"].read_text())["images"]}
    out = []
    for q in questions:
        if active_only and not q.get("active", True):
            continue
        img = images.get(q["img_id"])
        if img is None or (active_only and not img.get("active", True)):
            continue
        ans = [answers[i] for i in q["answers_ids"] if i in answers and (answers[i].get("active", True) or not active_only)]
        if not ans:
            continue
        out.append(RSVQAItem(q["id"], q["img_id"], _rsvqa_image(root, q["img_id"]), q["question"], ans[0]["answer"], q["type"]))
    return out


# --------------------------------------------------------------------------- DOTA


@dataclass
class DOTAObject:
    polygon: list[tuple[float, float]]  # 4 corners
    cls: str
    difficult: int

    @property
    def box(self) -> list[float]:
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return [min(xs), min(ys), max(xs), max(ys)]


def read_dota_label(path: str | Path) -> tuple[dict[str, str], list[DOTAObject]]:
    """One ``labelTxt`` file: its header (``imagesource``, ``gsd``) and objects."""
    meta: dict[str, str] = {}
    objs = []
    for line in _need(Path(path), "DOTA label").read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        if ":" in line and len(line.split()) == 1:
            k, v = line.split(":", 1)
            meta[k] = v
            continue
        t = line.split()
        if len(t) < 9:
            raise DatasetFormatError(f"{path}: expected 'x1 y1 … x4 y4 class difficult', got {line!r}")
        c = list(map(float, t[:8]))
        objs.append(DOTAObject(list(zip(c[0::2], c[1::2], strict=True)), t[8], int(t[9]) if len(t) > 9 else 0))
    return meta, objs


def read_dota(root: str | Path) -> list[tuple[Path, dict[str, str], list[DOTAObject]]]:
    """``(image path, header, objects)`` for every label in ``root/labelTxt``."""
    root = Path(root)
    out = []
    for lab in sorted(_need(root / "labelTxt", "DOTA labelTxt folder").glob("*.txt")):
        img = next((p for p in (root / "images" / (lab.stem + e) for e in (".png", ".jpg", ".tif")) if p.exists()), root / "images" / (lab.stem + ".png"))
        meta, objs = read_dota_label(lab)
        out.append((img, meta, objs))
    return out


# --------------------------------------------------------------------------- VOC XML (DIOR, DIOR-RSVG)


def read_voc(path: str | Path) -> dict[str, Any]:
    """A VOC-style XML (DIOR horizontal / oriented boxes, DIOR-RSVG with ``<description>``)."""
    root = ET.parse(_need(Path(path), "VOC XML")).getroot()
    size = root.find("size")
    out: dict[str, Any] = {
        "filename": root.findtext("filename"),
        "width": int(size.findtext("width")) if size is not None else None,  # type: ignore[arg-type]
        "height": int(size.findtext("height")) if size is not None else None,  # type: ignore[arg-type]
        "objects": [],
    }
    for o in root.iter("object"):
        d: dict[str, Any] = {"name": o.findtext("name")}
        bb = o.find("bndbox")
        if bb is not None:
            d["box"] = [float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]  # type: ignore[arg-type]
        rb = o.find("robndbox")
        if rb is not None:
            keys = ["left_top", "right_top", "right_bottom", "left_bottom"]
            d["polygon"] = [(float(rb.findtext(f"x_{k}")), float(rb.findtext(f"y_{k}"))) for k in keys]  # type: ignore[arg-type]
        if o.find("description") is not None:
            d["description"] = o.findtext("description")
        out["objects"].append(d)
    return out


def read_dior(root: str | Path, split: str, oriented: bool = False) -> list[tuple[Path, dict[str, Any]]]:
    """DIOR: ``(image path, parsed XML)`` for the ids in ``ImageSets/Main/<split>.txt``."""
    root = Path(root)
    ids = _need(root / "ImageSets" / "Main" / f"{split}.txt", "DIOR split list").read_text().split()
    ann = root / "Annotations" / ("Oriented Bounding Boxes" if oriented else "Horizontal Bounding Boxes")
    img_dirs = [d for d in root.glob("JPEGImages*") if d.is_dir()]
    out = []
    for i in ids:
        img = next((d / f"{i}.jpg" for d in img_dirs if (d / f"{i}.jpg").exists()), root / f"JPEGImages-{split}" / f"{i}.jpg")
        out.append((img, read_voc(ann / f"{i}.xml")))
    return out


def read_dior_rsvg(root: str | Path, split: str) -> list[dict[str, Any]]:
    """DIOR-RSVG: one item per referring expression of ``<split>.txt``: index, image path, class, box, description.

    The split file lists *object* indices: 0-based positions in the objects of all
    ``Annotations/*.xml`` taken in file-name order (the authors' loader counts them so),
    not image numbers. Items come in that order.
    """
    root = Path(root)
    split_file = _need(root / f"{split}.txt", "DIOR-RSVG split list")
    try:
        wanted = {int(t) for t in split_file.read_text().split()}
    except ValueError as exc:
        raise DatasetFormatError(f"{split_file} must list object indices (integers), one per line: {exc}") from None
    out, count = [], 0
    for xml in sorted(_need(root / "Annotations", "DIOR-RSVG Annotations folder").glob("*.xml")):
        x = read_voc(xml)
        for o in x["objects"]:
            if count in wanted:
                image = root / "JPEGImages" / (x["filename"] or f"{xml.stem}.jpg")
                out.append({"index": count, "image_path": image, "cls": o["name"], "box": o.get("box"), "description": o.get("description", "")})
            count += 1
    missing = sorted(i for i in wanted if i >= count)
    if missing:
        raise DatasetFormatError(f"{split_file} lists object indices {missing[:5]} but Annotations/ holds {count} objects; the split file and the annotations do not belong together")
    return out


# --------------------------------------------------------------------------- change detection / captioning


def read_levir_cd(root: str | Path, split: str = "all") -> list[tuple[Path, Path, Path]]:
    """LEVIR-CD style folders: ``(A, B, label)`` paths for the names in ``list/<split>.txt``."""
    root = Path(root)
    names = _need(root / "list" / f"{split}.txt", "LEVIR-CD list file").read_text().split()
    return [(root / "A" / n, root / "B" / n, root / "label" / n) for n in names]


def load_change_label(path: str | Path) -> np.ndarray:
    """A LEVIR-CD label PNG (0 / 255) as a boolean mask."""
    from PIL import Image

    a = np.asarray(Image.open(_need(Path(path), "change label")))
    return (a[..., 0] if a.ndim == 3 else a) > 127


def read_levir_cc(path: str | Path) -> list[dict[str, Any]]:
    """LEVIR-CC ``LevirCCcaptions.json``: filename, split, captions (raw, stripped) and ``changeflag``."""
    p = Path(path)
    if p.is_dir():
        p = p / "LevirCCcaptions.json"
    data = json.loads(_need(p, "LEVIR-CC captions JSON").read_text())
    out = []
    for im in data["images"]:
        caps = [s["raw"].strip().rstrip(" .").strip() for s in im["sentences"]]
        out.append({"filename": im["filename"], "filepath": im.get("filepath", im["split"]), "split": im["split"], "captions": caps, "changeflag": int(im.get("changeflag", 1)), "tokens": [s["tokens"] for s in im["sentences"]]})
    return out


def read_change_tokens(path: str | Path) -> list[str]:
    """LEVIR-MCI's preprocessed captions: a JSON list of token lists wrapped in ``<START>``/``<END>``."""
    toks = json.loads(_need(Path(path), "token file").read_text())
    return [" ".join(t for t in s if t not in ("<START>", "<END>", "<NULL>")) for s in toks]


# --------------------------------------------------------------------------- captions


def read_karpathy(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """A Karpathy-style ``dataset_*.json`` (UCM, RSICD, Sydney captions): filename, split, captions."""
    data = json.loads(_need(Path(path), "Karpathy JSON").read_text())
    return [
        {"filename": im["filename"], "split": im["split"], "captions": [s["raw"] for s in im["sentences"]], "imgid": im["imgid"]}
        for im in data["images"]
        if split is None or im["split"] == split
    ]


# --------------------------------------------------------------------------- instances


def read_coco(path: str | Path) -> dict[str, Any]:
    """COCO instances JSON (iSAID): images, categories by id, and annotations grouped by image id."""
    data = json.loads(_need(Path(path), "COCO JSON").read_text())
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    return {"images": data["images"], "categories": {c["id"]: c["name"] for c in data["categories"]}, "annotations": by_image}


@dataclass
class MaskInstance:
    cls: str
    mask: np.ndarray = field(repr=False)

    @property
    def box(self) -> list[float]:
        ys, xs = np.nonzero(self.mask)
        return [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]


def read_isaid_masks(color_png: str | Path, id_png: str | Path) -> list[MaskInstance]:
    """Instances from iSAID's ``_instance_color_RGB`` (class palette) and ``_instance_id_RGB`` PNGs."""
    from PIL import Image

    from geoassist.synth.encode import ISAID_PALETTE

    color = np.asarray(Image.open(_need(Path(color_png), "iSAID colour mask")).convert("RGB")).astype(np.int64)
    ids = np.asarray(Image.open(_need(Path(id_png), "iSAID id mask")).convert("RGB")).astype(np.int64)
    code = ids[..., 0] + 256 * ids[..., 1] + 65536 * ids[..., 2]
    ccode = color[..., 0] + 256 * color[..., 1] + 65536 * color[..., 2]
    names = {r + 256 * g + 65536 * b: n for n, (r, g, b) in ISAID_PALETTE.items()}
    out = []
    for v in np.unique(code):
        if v == 0:
            continue
        m = code == v
        cls_codes, counts = np.unique(ccode[m], return_counts=True)
        out.append(MaskInstance(names.get(int(cls_codes[np.argmax(counts)]), "unknown"), m))
    return out


# --------------------------------------------------------------------------- scene classification


EUROSAT_SUBDIR = Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif")


def read_eurosat(root: str | Path, split: str | None = None) -> list[tuple[Path, str]]:
    """EuroSAT-MS: ``(tif path, class)``; with ``split`` only the files in ``eurosat-<split>.txt``."""
    root = Path(root)
    base = _need(root / EUROSAT_SUBDIR, "EuroSAT image folder")
    wanted = set(_need(root / f"eurosat-{split}.txt", "EuroSAT split file").read_text().split()) if split else None
    out = []
    for p in sorted(base.glob("*/*.tif")):
        if wanted is None or p.name in wanted:
            out.append((p, p.parent.name))
    return out


def read_folders(root: str | Path) -> list[tuple[Path, str]]:
    """A folder-per-class dataset (RESISC45, AID, UCM): ``(image path, class)``."""
    root = _need(Path(root), "scene folder")
    exts = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
    return [(p, p.parent.name) for p in sorted(root.glob("*/*")) if p.suffix.lower() in exts]
