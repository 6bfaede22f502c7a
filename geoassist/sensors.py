"""Band selection, composites, stretch and band-per-file products, over the sensor presets.

The presets themselves (:class:`Sensor`, :class:`Band`, :data:`SENSORS`,
:func:`get_sensor`, :func:`detect_sensor`) live in :mod:`geoassist.sensor_presets`
and are re-exported here. This module decides, each in exactly one place:

- which bands of an image to use: :func:`select_bands` (bands named or numbered by
  the caller, the bands of a named composite or index, or the image's own red,
  green and blue);
- how values become 0–255 for display and RGB encoders: :func:`compute_stretch`
  (percentiles of the valid pixels, computable once on a scene's overview) and
  :func:`apply_stretch` (the same limits for every tile);

and from those makes composites (:func:`make_composite`, true colour by default;
false colour, SWIR, agriculture and urban, or a spectral index such as NDVI in
gray) and per-band statistics for a multi-band encoder (:func:`band_statistics`).

Bands stored at different resolutions (Sentinel-2's 10/20/60 m, Landsat's 15 m
panchromatic) are resampled onto one grid by :class:`~geoassist.raster.bandstack.BandStack`
(re-exported here), which reads windows of separate band files found by
:func:`find_band_files` (a ``.SAFE`` product, a folder of ``*_B04.jp2``/``*_B4.TIF``
files); :func:`load_band_files` reads them into one :class:`~geoassist.io.Image`.

Presets: ``sentinel2-l1c`` (13 bands), ``sentinel2-l2a`` (12), ``landsat5``,
``landsat7``, ``landsat8``, ``landsat9``, ``naip``, ``planetscope-4``,
``planetscope-8``, ``spot6``, ``worldview2``, ``worldview3``, ``rgb``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import BandMismatchError, ImageNotFoundError
from geoassist.raster import DEFAULT_MAX_PIXELS
from geoassist.sensor_presets import (
    COMPOSITES,
    INDICES,
    SENSORS,
    Band,
    Sensor,
    _bands,
    detect_sensor,
    get_sensor,
    list_sensors,
)

__all__ = [
    "Band",
    "Sensor",
    "SENSORS",
    "COMPOSITES",
    "INDICES",
    "BandStack",  # noqa: F822 - defined lazily by __getattr__
    "get_sensor",
    "list_sensors",
    "detect_sensor",
    "select_bands",
    "default_band_names",
    "describe_band_names",
    "make_composite",
    "compute_stretch",
    "apply_stretch",
    "sensor_for",
    "spectral_index",
    "band_statistics",
    "find_band_files",
    "load_band_files",
]

_RGB = ("red", "green", "blue")
_STRETCH_SAMPLE = 1_000_000  # percentiles of a regular subsample of this size are close enough


def __getattr__(name: str) -> Any:
    # Defined in modules that import this one: looked up on first use, so no import cycle.
    if name == "BandStack":
        from geoassist.raster.bandstack import BandStack

        return BandStack
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------ band names


def default_band_names(count: int) -> list[str]:
    """``band_1`` … ``band_N``: the names of bands nothing else names."""
    return [f"band_{i}" for i in range(1, count + 1)]


def describe_band_names(names: Sequence[str]) -> str:
    """Band names for a message: ``band_1..band_13`` for unnamed bands, at most 20 names."""
    names = list(names)
    if names == default_band_names(len(names)) and len(names) > 2:
        return f"band_1..band_{len(names)}"
    return ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", …"


def select_bands(
    band_names: Sequence[str],
    wanted: str | int | Sequence[str | int] | None = None,
    *,
    composite: str | None = None,
    sensor: Sensor | str | None = None,
    rgb: bool = False,
    source: str | None = None,
) -> list[int]:
    """0-based positions of the bands to use in an image whose bands are ``band_names``.

    This is the one place that decides which bands are used, in this order:

    1. ``wanted``: band names (case-insensitive) or 1-based band numbers, one or a
       sequence, in the order given. With a ``sensor``, a name that is not an image
       band is also looked up as the sensor's product id or common name
       (:meth:`Sensor.locate`: ``B04``, ``B4``, ``red``…).
    2. ``composite`` and/or ``sensor``: the bands of the named composite (true colour
       when only a sensor is given; an index such as ``ndvi`` gives its two bands),
       found through the sensor, or the one recognised from the band names
       (:func:`sensor_for`).
    3. Neither: the image's own RGB — the bands named red, green and blue; the only
       band, or the band named gray; the three bands of an unnamed 3-band image
       (R, G, B); the first three of an unnamed 4-band image (R, G, B, NIR, the order
       of NAIP and PlanetScope 4-band products); a recognised sensor's true colour
       (Sentinel-2, Landsat 8/9 band ids). Anything else raises
       :class:`BandMismatchError` with a hint.

    ``rgb=True`` requires 3 bands (or 1, for gray) from ``wanted``. ``source`` names
    the image in messages.
    """
    names = [str(n) for n in band_names]
    where = source or "the image"
    if wanted is not None:
        if isinstance(wanted, (str, int, np.integer)):
            wanted = [wanted]
        wanted = list(wanted)
        if rgb and len(wanted) not in (1, 3):
            raise BandMismatchError(
                f"an RGB composite needs 3 bands (or 1 for gray), got bands={wanted}; "
                f"{where} has bands {describe_band_names(names)}"
            )
        if not wanted:
            raise BandMismatchError("bands=[] selects nothing; name at least one band")
        preset = get_sensor(sensor) if sensor is not None else None
        return [_find_band(names, band, preset, where) for band in wanted]
    if composite is not None or sensor is not None:
        preset = sensor_for(names, sensor)
        return preset.locate(names, preset.composite_bands(composite or "true_color"))
    lowered = [n.lower() for n in names]
    if all(c in lowered for c in _RGB):
        return [lowered.index(c) for c in _RGB]
    if len(names) == 1:
        return [0]
    if "gray" in lowered:
        return [lowered.index("gray")]
    if len(names) == 3 or (len(names) == 4 and names == default_band_names(4)):
        return [0, 1, 2]
    found = detect_sensor(names)
    if found is not None:
        return found.locate(names, found.composite_bands("true_color"))
    raise BandMismatchError(
        f"cannot tell which bands are red, green and blue: {where} has {len(names)} bands "
        f"named {describe_band_names(names)}; pass bands=[...] (three band names or 1-based "
        "band numbers, e.g. bands=[4, 3, 2] for Sentinel-2 true colour) or a sensor preset"
    )


def _find_band(names: list[str], band: str | int, preset: Sensor | None, where: str) -> int:
    if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
        if not 1 <= band <= len(names):
            raise BandMismatchError(
                f"band {band} does not exist in {where}, which has {len(names)} bands "
                f"({describe_band_names(names)}); band numbers start at 1"
            )
        return int(band) - 1
    lowered = [n.lower() for n in names]
    if isinstance(band, str) and band.lower() in lowered:
        return lowered.index(band.lower())
    if preset is not None:
        return preset.locate(names, [str(band)])[0]  # says which product band is missing
    raise BandMismatchError(
        f"no band {band!r} in {where}; its bands are {describe_band_names(names)} "
        "(select by these names or by 1-based number)"
    )


# ------------------------------------------------------------------ composites


def spectral_index(image: Any, name: str, sensor: Sensor | str | None = None) -> np.ndarray:
    """H×W float32 normalised difference (``ndvi``, ``ndwi``, ``nbr``, ``ndbi``) in [-1, 1].

    Computed on reflectance (the sensor's scale and offset); invalid pixels and
    zero denominators are NaN.
    """
    sensor = sensor_for(image, sensor)
    ia, ib = select_bands(image.band_names, composite=name, sensor=sensor, source=image.source)
    a = sensor.to_reflectance(image.array[:, :, ia])
    b = sensor.to_reflectance(image.array[:, :, ib])
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (a - b) / (a + b)
    out[~image.valid_mask() | ~np.isfinite(out)] = np.nan
    return np.clip(out, -1, 1).astype(np.float32)


def compute_stretch(
    image: Any, indexes: Sequence[int], percentiles: tuple[float, float] = (2.0, 98.0)
) -> np.ndarray:
    """(len(indexes), 2) low/high values of each band between ``percentiles`` of its valid pixels.

    Compute it once on a scene's overview and pass it to :func:`make_composite`
    for every tile, so that tiles share one colour scale.
    """
    low_pct, high_pct = percentiles
    if not 0 <= low_pct < high_pct <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
    valid = image.valid_mask()
    limits = np.zeros((len(indexes), 2), dtype=np.float64)
    for k, i in enumerate(indexes):
        band = image.array[:, :, i]
        values = band[valid & np.isfinite(band)] if band.dtype.kind == "f" else band[valid]
        if values.size == 0:
            limits[k] = (0.0, 1.0)
            continue
        if values.size > _STRETCH_SAMPLE:
            values = values[:: values.size // _STRETCH_SAMPLE]
        limits[k] = np.percentile(values.astype(np.float64), [low_pct, high_pct])
    return limits


def apply_stretch(bands: np.ndarray, limits: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """H×W×C uint8 of ``bands`` mapped linearly from ``limits`` (C × (low, high)) to 0–255; invalid → 0."""
    out = np.zeros(bands.shape, dtype=np.uint8)
    for k in range(bands.shape[2]):
        low, high = limits[k]
        scale = 255.0 / (high - low) if high > low else 0.0
        band = bands[:, :, k].astype(np.float32)
        scaled = np.clip((band - np.float32(low)) * np.float32(scale), 0, 255)
        ok = valid & np.isfinite(band)
        out[:, :, k] = np.where(ok, np.rint(np.nan_to_num(scaled)), 0).astype(np.uint8)
    return out


def make_composite(
    image: Any,
    sensor: Sensor | str | None = None,
    composite: str = "true_color",
    *,
    stretch: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """H×W×3 uint8: the named composite of ``image`` for display and for RGB encoders.

    Band composites take three bands by common name (true colour R, G, B; false
    colour NIR, R, G; …). uint8 bands pass unchanged unless ``stretch`` is given;
    other dtypes are stretched band by band to 0–255 between ``stretch`` limits
    (see :func:`compute_stretch`) or between ``percentiles`` of this image.
    Index composites (``ndvi``…) map [-1, 1] linearly to 0–255, replicated in
    three channels. Invalid pixels become 0.
    """
    sensor = sensor_for(image, sensor)
    key = composite.lower().replace("-", "_")
    if key in INDICES:
        index = spectral_index(image, key, sensor)
        gray = np.where(np.isnan(index), 0, np.rint((index + 1) * 127.5)).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    indexes = select_bands(
        image.band_names, composite=composite, sensor=sensor, source=image.source
    )
    chosen = image.array[:, :, indexes]
    if chosen.dtype == np.uint8 and stretch is None:
        return np.ascontiguousarray(chosen)
    limits = stretch if stretch is not None else compute_stretch(image, indexes, percentiles)
    return apply_stretch(chosen, np.asarray(limits, dtype=np.float64), image.valid_mask())


def band_statistics(
    images: Iterable[Any], bands: Sequence[str], sensor: Sensor | str | None = None
) -> tuple[list[float], list[float]]:
    """Per-band mean and standard deviation of the valid pixels of ``images``, in reflectance.

    This is what a multi-band encoder normalises with (``PreprocessConfig.mean``/
    ``std`` when ``in_bands > 3``): compute it on the training data.
    """
    total = None
    total_sq = None
    count = 0
    for image in images:
        s = sensor_for(image, sensor)
        idx = select_bands(image.band_names, list(bands), sensor=s, source=image.source)
        valid = image.valid_mask()
        values = s.to_reflectance(image.array[:, :, idx][valid]).astype(np.float64)
        if total is None:
            total = np.zeros(len(bands))
            total_sq = np.zeros(len(bands))
        total += values.sum(axis=0)
        total_sq += (values**2).sum(axis=0)
        count += values.shape[0]
    if not count:
        raise BandMismatchError("no valid pixels to compute band statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 1e-12))
    return [float(round(m, 6)) for m in mean], [float(round(max(s, 1e-6), 6)) for s in std]


def sensor_for(image: Any, sensor: Sensor | str | None) -> Sensor:
    """``sensor`` as a preset, else the one recognised from the band names (or RGB/RGBN).

    ``image`` is an :class:`~geoassist.io.Image` (or anything with ``band_names``) or
    the band names themselves.
    """
    if sensor is not None:
        return get_sensor(sensor)
    band_names = [str(n) for n in getattr(image, "band_names", image)]
    found = detect_sensor(band_names)
    if found is not None:
        return found
    lowered = {n.lower() for n in band_names}
    if {"red", "green", "blue"} <= lowered:
        rgb = SENSORS["rgb"]
        if "nir" in lowered:
            return dataclasses.replace(
                rgb, name="rgbn", bands=rgb.bands + _bands(("nir", "nir", 830, None))
            )
        return rgb
    raise BandMismatchError(
        f"cannot tell which sensor took this image (bands {', '.join(band_names[:16])}); "
        f"pass sensor= (one of {', '.join(SENSORS)})"
    )


# ------------------------------------------------------------- band-per-file products


def find_band_files(folder: str | Path, sensor: Sensor | str | None = None) -> dict[str, Path]:
    """Band id → file for a Sentinel-2 ``.SAFE`` folder (L1C or L2A) or a folder of band files.

    For L2A products, whose bands exist at several resolutions (``R10m``,
    ``R20m``, ``R60m``), the finest file of each band is chosen. Without ``sensor``
    a folder must hold at least three bands of one product to be recognised.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ImageNotFoundError(f"no such folder: {folder}")
    sensors = (
        [get_sensor(sensor)]
        if sensor is not None
        else [SENSORS["sentinel2-l1c"], SENSORS["landsat8"]]
    )
    candidates = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file()
        and p.suffix.lower() in (".jp2", ".tif", ".tiff")
        and "QI_DATA" not in p.parts
    ]
    for s in sensors:
        pattern = re.compile(s.band_file_pattern or r"(?!)", re.IGNORECASE)
        found: dict[str, tuple[float, Path]] = {}
        for p in candidates:
            match = pattern.search(p.name)
            if not match:
                continue
            try:
                band = s.band(match.group(1))
            except BandMismatchError:
                continue
            res = re.search(r"_(\d+)m\.", p.name)
            res_m = float(res.group(1)) if res else 0.0
            if band.name not in found or res_m < found[band.name][0]:
                found[band.name] = (res_m, p)
        if len(found) >= (1 if sensor is not None else 3):
            order = [b.name for b in s.bands if b.name in found]
            return {name: found[name][1] for name in order}
    raise ImageNotFoundError(
        f"no band files found in {folder}; expected Sentinel-2 (*_B04.jp2, *_B04_10m.jp2) or "
        "Landsat (*_B4.TIF, *_SR_B4.TIF) band files"
    )


def load_band_files(
    source: str | Path | Mapping[str, str | Path] | Sequence[str | Path],
    *,
    sensor: Sensor | str | None = None,
    bands: Sequence[str] | None = None,
    resolution_m: float | None = None,
    window: tuple[int, int, int, int] | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Any:
    """An :class:`~geoassist.io.Image` stacked from band files (a ``.SAFE``/band folder, a list, or a mapping).

    Bands are named by their product ids (``B01``…``B12``, ``B8A``) and resampled
    onto the ``resolution_m`` grid (default: the finest band). ``window=(col_off,
    row_off, width, height)`` is in pixels of that grid. ``max_pixels`` caps width ×
    height × bands read (``None``: no cap).
    """
    from geoassist.raster.bandstack import BandStack, BandStackReader

    name = str(source) if isinstance(source, (str, Path)) else None
    if isinstance(source, (str, Path)):
        files = find_band_files(source, sensor)
    elif isinstance(source, Mapping):
        files = {str(k): Path(v) for k, v in source.items()}
    else:
        s = get_sensor(sensor) if sensor is not None else SENSORS["sentinel2-l1c"]
        pattern = re.compile(s.band_file_pattern or r"(B\w+)\.\w+$", re.IGNORECASE)
        files = {}
        for p in map(Path, source):
            match = pattern.search(p.name)
            files[s.band(match.group(1)).name if match else p.stem] = p
    if bands is not None:
        s = get_sensor(sensor) if sensor is not None else detect_sensor(list(files))
        keys = [s.band(b).name if s else b for b in bands]
        missing = [k for k in keys if k not in files]
        if missing:
            raise BandMismatchError(f"no file for band(s) {missing}; found {list(files)}")
        files = {k: files[k] for k in keys}
    with BandStackReader(BandStack(files, resolution_m=resolution_m), name, max_pixels) as reader:
        return reader.read(window=window)
