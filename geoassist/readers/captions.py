"""Karpathy-style caption JSON (UCM-, Sydney-, RSICD-, RSITMD-captions; LEVIR-CC and SECOND-CC add ``changeflag``).

``{"images": [{"filename", "split", "filepath"?, "imgid"?, "sentences": [{"raw", "tokens"}], "changeflag"?}]}``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoassist.readers.common import DatasetFormatError, Malformed, json_list, load_json


@dataclass
class CaptionedImage:
    filename: str
    split: str
    captions: list[str]  # each sentence's ``raw`` text, else its tokens joined
    tokens: list[list[str]] = field(default_factory=list)
    filepath: str | None = None
    changeflag: int | None = None  # LEVIR-CC / SECOND-CC only
    extra: dict[str, Any] = field(default_factory=dict)  # imgid, class, keywords when present


def read_caption_images(
    path: str | Path, what: str = "Karpathy caption JSON"
) -> list[CaptionedImage | Malformed]:
    """Every entry of ``images``, in file order; an entry without a file name or sentences list is :class:`Malformed`."""
    path = Path(path)
    out: list[CaptionedImage | Malformed] = []
    for n, im in enumerate(json_list(load_json(path, what), "images", path, what)):
        name = im.get("filename") if isinstance(im, dict) else None
        sentences = im.get("sentences", []) if isinstance(im, dict) else None
        if not isinstance(name, str) or not name.strip() or not isinstance(sentences, list):
            out.append(
                Malformed(
                    f"{path.name}#{n}",
                    "malformed annotation",
                    f"image {n} has no filename or no sentences list ({str(im)[:120]})",
                )
            )
            continue
        sentences = [s for s in sentences if isinstance(s, dict)]
        flag = im.get("changeflag")
        out.append(
            CaptionedImage(
                filename=name,
                split=str(im.get("split", "all")),
                captions=[
                    str(s.get("raw") or " ".join(map(str, s.get("tokens") or [])))
                    for s in sentences
                ],
                tokens=[list(s.get("tokens") or []) for s in sentences],
                filepath=im.get("filepath"),
                changeflag=int(flag)
                if isinstance(flag, (int, float, str)) and str(flag).strip().isdigit()
                else None,
                extra={k: im[k] for k in ("imgid", "class", "keywords") if k in im},
            )
        )
    return out


def _strict(items: list[CaptionedImage | Malformed], path: Path) -> list[CaptionedImage]:
    bad = [i for i in items if isinstance(i, Malformed)]
    if bad:
        raise DatasetFormatError(
            f"{path}: {bad[0].detail}; fix the entry (or build with `geoassist data build`, which rejects it and goes on)"
        )
    return [i for i in items if isinstance(i, CaptionedImage)]


def read_karpathy(path: str | Path, split: str | None = None) -> list[dict[str, Any]]:
    """A Karpathy-style ``dataset_*.json`` (UCM, RSICD, Sydney captions): filename, split, captions, imgid."""
    path = Path(path)
    return [
        {
            "filename": im.filename,
            "split": im.split,
            "captions": im.captions,
            "imgid": im.extra.get("imgid"),
        }
        for im in _strict(read_caption_images(path), path)
        if split is None or im.split == split
    ]


def read_levir_cc(path: str | Path) -> list[dict[str, Any]]:
    """LEVIR-CC ``LevirCCcaptions.json``: filename, split, captions (stripped of the final period), ``changeflag``."""
    p = Path(path)
    if p.is_dir():
        p = p / "LevirCCcaptions.json"
    return [
        {
            "filename": im.filename,
            "filepath": im.filepath or im.split,
            "split": im.split,
            "captions": [c.strip().rstrip(" .").strip() for c in im.captions],
            "changeflag": 1 if im.changeflag is None else im.changeflag,
            "tokens": im.tokens,
        }
        for im in _strict(read_caption_images(p, "LEVIR-CC captions JSON"), p)
    ]
