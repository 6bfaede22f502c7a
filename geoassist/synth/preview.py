"""A contact sheet: synthetic samples with their annotations drawn, beside a real sample."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from geoassist.synth.types import Pair, Scene

TILE = 256
_COLOURS = {
    "building": (255, 80, 80), "small_vehicle": (255, 230, 0), "large_vehicle": (255, 140, 0), "ship": (0, 230, 255),
    "airplane": (255, 0, 255), "storage_tank": (180, 255, 120), "tree": (60, 200, 60), "swimming_pool": (0, 120, 255),
    "bridge": (255, 255, 255), "water_area": (0, 160, 255), "road": (200, 200, 200),
}  # fmt: skip


def _real_samples_root() -> Path | None:
    env = os.environ.get("GEOASSIST_RS_SAMPLES")
    for cand in ([Path(env)] if env else []) + [Path.cwd().parent / "shared" / "rs-samples", Path(__file__).resolve().parents[3] / "shared" / "rs-samples"]:
        if cand.is_dir():
            return cand
    return None


def _fit(img: np.ndarray) -> tuple[Image.Image, float]:
    im = Image.fromarray(img[..., :3] if img.ndim == 3 else img)
    k = TILE / max(im.size)
    return im.resize((max(1, round(im.size[0] * k)), max(1, round(im.size[1] * k))), Image.BILINEAR).convert("RGB"), k


def draw_scene(scene: Scene) -> Image.Image:
    im, k = _fit(scene.rgb)
    d = ImageDraw.Draw(im)
    for o in scene.annotation.objects:
        if o.is_region and o.cls not in ("water_area",):
            continue
        c = _COLOURS.get(o.cls, (255, 255, 255))
        d.polygon([(x * k, y * k) for x, y in o.obox.corners()], outline=c)
    d.text((3, 2), f"{scene.annotation.scene_class} {scene.annotation.gsd_m:g}m", fill=(255, 255, 255))
    return im


def draw_pair(pair: Pair) -> Image.Image:
    a, _ = _fit(pair.images[0])
    b, _ = _fit(pair.images[-1])
    m, _ = _fit(pair.annotation.change_mask.astype(np.uint8) * 255)  # type: ignore[union-attr]
    out = Image.new("RGB", (a.size[0] * 3, a.size[1]))
    for i, im in enumerate((a, b, m)):
        out.paste(im, (i * a.size[0], 0))
    ImageDraw.Draw(out).text((3, 2), ", ".join(sorted({c.kind for c in pair.annotation.changes})) or "no change", fill=(255, 255, 0))
    return out


def real_tiles(kind: str) -> list[Image.Image]:
    """Real samples from ``../shared/rs-samples`` (DOTA with its labels, RSVQA-LR, LEVIR-CD) when present."""
    root = _real_samples_root()
    if root is None:
        return []
    try:
        if kind == "ms":
            return [_fit(np.asarray(Image.open(root / "rsvqa/LR_reduced/images/0.png").convert("RGB")))[0]]
        if kind in ("pair", "series"):
            base = root / "change_detection/samples_LEVIR"
            name = (base / "list/all.txt").read_text().split()[0]
            ims = [_fit(np.asarray(Image.open(base / f / name).convert("RGB")))[0] for f in ("A", "B", "label")]
            out = Image.new("RGB", (TILE * 3, TILE))
            for i, im in enumerate(ims):
                out.paste(im, (i * TILE, 0))
            return [out]
        from geoassist.readers import read_dota_label

        img = np.asarray(Image.open(root / "dota/images/P1888.png").convert("RGB"))
        crop = img[:512, :512]
        im, k = _fit(crop)
        d = ImageDraw.Draw(im)
        for o in read_dota_label(root / "dota/labelTxt/P1888.txt")[1]:
            d.polygon([(x * k, y * k) for x, y in o.polygon], outline=(255, 230, 0))
        return [im]
    except OSError:
        return []


def contact_sheet(samples: list[Scene | Pair], path: str | Path, cols: int = 4) -> Path:
    """Writes a PNG grid: real sample(s) first (labelled REAL), then the synthetic ones."""
    kind = "pair" if samples and isinstance(samples[0], Pair) else (samples[0].annotation.kind if samples else "hr")
    tiles = []
    for r in real_tiles(kind):
        ImageDraw.Draw(r).text((3, TILE - 14), "REAL", fill=(255, 60, 60))
        tiles.append(r)
    tiles += [draw_pair(s) if isinstance(s, Pair) else draw_scene(s) for s in samples]
    if not tiles:
        tiles = [Image.new("RGB", (TILE, TILE))]
    tw = max(t.size[0] for t in tiles)
    cols = max(1, min(cols, (4 * TILE) // tw or 1))
    rows = (len(tiles) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * tw, rows * TILE), (20, 20, 20))
    for i, t in enumerate(tiles):
        sheet.paste(t, ((i % cols) * tw, (i // cols) * TILE))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
