"""DOTA ``labelTxt``: an optional header (``imagesource:…``, ``gsd:…``) then one object a line,
``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` (the ``difficult`` flag may be absent)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geoassist.readers.common import DatasetFormatError, Malformed, need, read_text

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class DOTAObject:
    polygon: list[tuple[float, float]]  # 4 corners, as written
    cls: str
    difficult: int = 0
    line: int = 0  # 1-based line number in the label file

    @property
    def box(self) -> list[float]:
        xs, ys = [p[0] for p in self.polygon], [p[1] for p in self.polygon]
        return [min(xs), min(ys), max(xs), max(ys)]


def parse_dota_label(
    lines: Sequence[str], name: str = "labelTxt"
) -> tuple[dict[str, str], list[DOTAObject], list[Malformed]]:
    """Header, objects and the lines that are neither (as :class:`Malformed`, keyed ``name:line``)."""
    header: dict[str, str] = {}
    objects: list[DOTAObject] = []
    bad: list[Malformed] = []
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
            bad.append(
                Malformed(f"{name}:{number}", "malformed line", f"line {number}: {text[:200]}")
            )
            continue
        objects.append(
            DOTAObject(
                list(zip(coords[0::2], coords[1::2], strict=True)), parts[8], difficult, number
            )
        )
    return header, objects, bad


def read_dota_label(
    path: str | Path, malformed: list[Malformed] | None = None
) -> tuple[dict[str, str], list[DOTAObject]]:
    """One ``labelTxt`` file: its header and objects.

    A malformed line raises :class:`DatasetFormatError`, unless a ``malformed`` list is given
    to collect it.
    """
    path = Path(path)
    header, objects, bad = parse_dota_label(read_text(path, "DOTA label").splitlines(), path.name)
    if bad and malformed is None:
        raise DatasetFormatError(
            f"{path}: expected 'x1 y1 … x4 y4 class difficult', got {bad[0].detail}; fix the line or read with malformed=[] to skip it"
        )
    if malformed is not None:
        malformed += bad
    return header, objects


def find_image(folder: Path, stem: str) -> Path | None:
    """``folder/<stem>.<ext>`` for the first image extension present, or None."""
    return next(
        (folder / f"{stem}{e}" for e in IMAGE_EXTS if (folder / f"{stem}{e}").is_file()), None
    )


def read_dota(root: str | Path) -> list[tuple[Path, dict[str, str], list[DOTAObject]]]:
    """``(image path, header, objects)`` for every label in ``root/labelTxt``."""
    root = Path(root)
    out = []
    for lab in sorted(need(root / "labelTxt", "DOTA labelTxt folder").glob("*.txt")):
        img = find_image(root / "images", lab.stem) or root / "images" / (lab.stem + ".png")
        meta, objs = read_dota_label(lab)
        out.append((img, meta, objs))
    return out
