"""Objects → detection, grounding, counting, presence, referring, region captions, B2C captions.

DOTA v1.0/v1.5/v2.0 (``labelTxt``), DIOR (VOC XML, horizontal and oriented), FAIR1M (XML),
DIOR-RSVG and RSVG (referring expressions in VOC-style XML).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeInfo,
    Reject,
    register,
    split_filter,
)
from ..geometry import box_of_points, label_name
from ..tasks import check_objects, object_records

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

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
    for ext in IMAGE_EXTS:
        if (folder / f"{stem}{ext}").is_file():
            return f"{stem}{ext}"
    return None


def parse_dota_lines(
    lines: Sequence[str],
) -> tuple[dict[str, str], list[dict[str, Any]], list[tuple[int, str]]]:
    """A ``labelTxt`` file: header (``imagesource``, ``gsd``), objects (quad, class, difficult), bad lines."""
    header: dict[str, str] = {}
    objects, bad = [], []
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        parts = text.split()
        if len(parts) == 1 and ":" in text:
            key, value = text.split(":", 1)
            header[key.strip()] = value.strip()
            continue
        try:
            if len(parts) not in (9, 10):
                raise ValueError
            coords = [float(v) for v in parts[:8]]
            difficult = int(parts[9]) if len(parts) == 10 else 0
        except ValueError:
            bad.append((number, text[:200]))
            continue
        quad = [[coords[i], coords[i + 1]] for i in range(0, 8, 2)]
        objects.append({"class": parts[8], "points": quad, "difficult": difficult, "line": number})
    return header, objects, bad


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
        _, objects, _ = parse_dota_lines(first.read_text(errors="replace").splitlines()[:50])
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
        header, raw, bad = parse_dota_lines(
            (ctx.src / item["label"]).read_text(encoding="utf-8", errors="replace").splitlines()
        )
        outcomes: list[Outcome] = [
            Dropped(rid, "malformed line", f"line {n}: {text}") for n, text in bad
        ]
        objects = [
            {**o, "label": label_name(o["class"]), "box": box_of_points(o["points"])} for o in raw
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
