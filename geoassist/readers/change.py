"""Change detection and change captioning: LEVIR-CD lists and labels, LEVIR-MCI token files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from geoassist.readers.common import DatasetFormatError, load_json, need, read_text

NO_CAPTION_TOKENS = ("<START>", "<END>", "<NULL>")


def read_levir_cd(root: str | Path, split: str = "all") -> list[tuple[Path, Path, Path]]:
    """LEVIR-CD style folders: ``(A, B, label)`` paths for the names in ``list/<split>.txt``."""
    root = Path(root)
    names = read_text(root / "list" / f"{split}.txt", "LEVIR-CD list file").split()
    return [(root / "A" / n, root / "B" / n, root / "label" / n) for n in names]


def load_change_label(path: str | Path) -> np.ndarray:
    """A LEVIR-CD label PNG (0 / 255) as a boolean mask."""
    from PIL import Image

    with Image.open(need(Path(path), "change label")) as im:
        a = np.asarray(im)
    return (a[..., 0] if a.ndim == 3 else a) > 127


def read_change_tokens(path: str | Path) -> list[str]:
    """LEVIR-MCI's preprocessed captions: a JSON list of token lists wrapped in ``<START>``/``<END>``."""
    path = Path(path)
    toks = load_json(path, "change-caption token file")
    if not isinstance(toks, list) or not all(isinstance(s, list) for s in toks):
        raise DatasetFormatError(
            f"{path} must hold a JSON list of token lists (LEVIR-MCI's tokens/*.txt); it holds a {type(toks).__name__}"
        )
    return [" ".join(str(t) for t in s if t not in NO_CAPTION_TOKENS) for s in toks]
