"""Scene classification layouts: a folder per class (RESISC45, AID, UCM) and EuroSAT-MS's release tree."""

from __future__ import annotations

from pathlib import Path

from geoassist.readers.common import need, read_text

EUROSAT_SUBDIR = Path("ds/images/remote_sensing/otherDatasets/sentinel_2/tif")
SCENE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}


def read_eurosat(root: str | Path, split: str | None = None) -> list[tuple[Path, str]]:
    """EuroSAT-MS: ``(tif path, class)``; with ``split`` only the files in ``eurosat-<split>.txt``."""
    root = Path(root)
    base = need(root / EUROSAT_SUBDIR, "EuroSAT image folder")
    wanted = (
        set(read_text(root / f"eurosat-{split}.txt", "EuroSAT split file").split())
        if split
        else None
    )
    return [
        (p, p.parent.name)
        for p in sorted(base.glob("*/*.tif"))
        if wanted is None or p.name in wanted
    ]


def read_folders(root: str | Path) -> list[tuple[Path, str]]:
    """A folder-per-class dataset (RESISC45, AID, UCM): ``(image path, class)``."""
    root = need(Path(root), "scene folder")
    return [(p, p.parent.name) for p in sorted(root.glob("*/*")) if p.suffix.lower() in SCENE_EXTS]
