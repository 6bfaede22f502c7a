"""Sensor presets: band names, wavelengths, resolutions, scale factors and how to feed the encoder.

A :class:`Sensor` knows its bands (product band ids such as ``B04``, common names
such as ``red``, centre wavelengths and native resolutions) and how its digital
numbers become reflectance (``reflectance = DN * scale + offset``). From an
:class:`~geoassist.io.Image` it makes

- the encoder's 3-band input: :func:`make_composite` (true colour by default;
  false colour, SWIR, agriculture and urban composites, or a spectral index such
  as NDVI shown in gray) with a percentile stretch for display that can be
  computed once (:func:`compute_stretch`) and applied to every tile of a scene;
- per-band statistics for a multi-band encoder (:func:`band_statistics`), used by
  the learned band adapter (``VisionConfig.in_bands``).

Bands stored at different resolutions (Sentinel-2's 10/20/60 m, Landsat's 15 m
panchromatic) are resampled onto one grid by :class:`BandStack`, which reads
windows of separate band files (a ``.SAFE`` product, a folder of ``*_B04.jp2``/
``*_B4.TIF`` files, or an explicit list) without loading whole bands.

Presets: ``sentinel2-l1c`` (13 bands), ``sentinel2-l2a`` (12), ``landsat5``,
``landsat7``, ``landsat8``, ``landsat9``, ``naip``, ``planetscope-4``,
``planetscope-8``, ``spot6``, ``worldview2``, ``worldview3``, ``rgb``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import BandMismatchError, ConfigError, ImageNotFoundError

__all__ = [
    "Band",
    "Sensor",
    "SENSORS",
    "BandStack",
    "get_sensor",
    "list_sensors",
    "detect_sensor",
    "make_composite",
    "compute_stretch",
    "apply_stretch",
    "sensor_for",
    "spectral_index",
    "band_statistics",
    "prepare_for_encoder",
    "find_band_files",
    "load_band_files",
]


@dataclass(frozen=True)
class Band:
    """One spectral band: product id, common name (STAC ``eo`` names), centre wavelength, GSD."""

    name: str
    common: str | None
    wavelength_nm: float | None
    resolution_m: float | None
    aliases: tuple[str, ...] = ()


# Composites by common name; a sensor lists those all of whose bands it has.
COMPOSITES: dict[str, tuple[str, str, str]] = {
    "true_color": ("red", "green", "blue"),
    "false_color": ("nir", "red", "green"),  # colour infrared: vegetation red
    "swir": ("swir22", "nir", "red"),  # short-wave infrared: burn scars, moisture
    "agriculture": ("swir16", "nir", "blue"),
    "urban": ("swir22", "swir16", "red"),
}
# Normalised differences (a - b) / (a + b) by common name.
INDICES: dict[str, tuple[str, str]] = {
    "ndvi": ("nir", "red"),  # vegetation
    "ndwi": ("green", "nir"),  # open water (McFeeters)
    "nbr": ("nir", "swir22"),  # burn ratio
    "ndbi": ("swir16", "nir"),  # built-up
}


@dataclass(frozen=True)
class Sensor:
    """A sensor and product: its bands in file order and how DNs become reflectance."""

    name: str
    title: str
    bands: tuple[Band, ...]
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None
    notes: str = ""
    band_file_pattern: str | None = (
        None  # regex whose group 1 is the band id, for band-per-file products
    )

    # ----------------------------------------------------------------- bands
    @property
    def band_names(self) -> list[str]:
        return [b.name for b in self.bands]

    def band(self, name: str) -> Band:
        """A band by product id, alias or common name (case-insensitive)."""
        key = _norm(name)
        for b in self.bands:
            if key in {_norm(b.name), *(_norm(a) for a in b.aliases)}:
                return b
        common = str(name).strip().lower()
        for b in self.bands:
            if b.common is not None and common == b.common.lower():
                return b
        # "nir" also finds a near-infrared band named nir08 (Landsat), "rededge" the first red edge.
        if common in ("nir", "rededge"):
            for b in self.bands:
                if b.common and b.common.lower().startswith(common):
                    return b
        raise BandMismatchError(
            f"{self.name} has no band {name!r}; its bands are "
            + ", ".join(f"{b.name} ({b.common})" if b.common else b.name for b in self.bands)
        )

    def has(self, *names: str) -> bool:
        try:
            for n in names:
                self.band(n)
        except BandMismatchError:
            return False
        return True

    @property
    def composites(self) -> list[str]:
        """Names of the composites and indices this sensor can make."""
        out = [name for name, bands in COMPOSITES.items() if self.has(*bands)]
        return out + [name for name, bands in INDICES.items() if self.has(*bands)]

    def locate(self, band_names: Sequence[str], wanted: Iterable[str]) -> list[int]:
        """0-based positions in an image with ``band_names`` of the ``wanted`` sensor bands.

        An image band matches by product id (``B04``, also ``B4``, ``SR_B4``,
        ``T31UDQ_…_B04_10m``), by alias or by common name (``red``). An image whose
        bands are unnamed (``band_1``…) and as many as the sensor's is taken in the
        sensor's band order.
        """
        wanted = list(wanted)
        targets = [self.band(w) for w in wanted]
        lowered = [n.lower() for n in band_names]
        unnamed = lowered == [f"band_{i}" for i in range(1, len(lowered) + 1)]
        out = []
        for b in targets:
            keys = {_norm(b.name), *(_norm(a) for a in b.aliases)}
            found = [i for i, n in enumerate(band_names) if _norm(n) in keys]
            if not found and b.common is not None:
                found = [i for i, n in enumerate(lowered) if n == b.common.lower()]
            if not found and unnamed and len(band_names) == len(self.bands):
                found = [self.bands.index(b)]
            if not found:
                raise BandMismatchError(
                    f"the image has no {b.name} ({b.common}) band for {self.name}; its bands are "
                    f"{', '.join(band_names)}. Name the bands (band descriptions), pass bands=[...], "
                    "or pick the sensor that took the image"
                )
            out.append(found[0])
        return out

    def composite_bands(self, composite: str) -> tuple[str, ...]:
        """The band ids of a named composite (or the two bands of an index)."""
        key = composite.lower().replace("-", "_")
        key = {"truecolor": "true_color", "falsecolor": "false_color", "cir": "false_color"}.get(
            key, key
        )
        if key in COMPOSITES:
            source = COMPOSITES[key]
        elif key in INDICES:
            source = INDICES[key]
        else:
            raise ConfigError(
                f"unknown composite {composite!r}; {self.name} makes: {', '.join(self.composites)}"
            )
        try:
            return tuple(self.band(c).name for c in source)
        except BandMismatchError as exc:
            raise ConfigError(
                f"{self.name} cannot make {composite!r} ({exc}); it makes: {', '.join(self.composites)}"
            ) from None

    def to_reflectance(self, values: np.ndarray) -> np.ndarray:
        """DN → reflectance (float32) with this product's scale and offset."""
        out = values.astype(np.float32, copy=True)
        if self.scale != 1.0:
            out *= np.float32(self.scale)
        if self.offset:
            out += np.float32(self.offset)
        return out

    def with_scaling(self, scale: float, offset: float = 0.0) -> Sensor:
        """The same bands with another DN → reflectance scaling (e.g. Sentinel-2 baseline 04.00)."""
        return dataclasses.replace(self, scale=scale, offset=offset)


def _norm(name: str) -> str:
    """``B4``, ``b04``, ``SR_B4``, ``T31UDQ_20200101T105441_B04_10m`` → ``B4``; other names upper-cased."""
    text = str(name).strip().upper()
    match = re.search(r"(?:^|[_\-. ])(?:SR_|ST_|TOA_)?B0*(\d{1,2}A?)(?:_\d+M)?$", text)
    if match:
        return "B" + match.group(1)
    match = re.fullmatch(r"B0*(\d{1,2}A?)", text)
    return "B" + match.group(1) if match else text


def _bands(*rows: tuple) -> tuple[Band, ...]:
    return tuple(Band(*row) for row in rows)


_S2_BANDS = _bands(
    ("B01", "coastal", 443, 60),
    ("B02", "blue", 490, 10),
    ("B03", "green", 560, 10),
    ("B04", "red", 665, 10),
    ("B05", "rededge1", 705, 20),
    ("B06", "rededge2", 740, 20),
    ("B07", "rededge3", 783, 20),
    ("B08", "nir", 842, 10),
    ("B8A", "nir08", 865, 20),
    ("B09", "nir09", 945, 60),
    ("B10", "cirrus", 1375, 60),
    ("B11", "swir16", 1610, 20),
    ("B12", "swir22", 2190, 20),
)
_S2_FILES = r"(?:^|_)(B\d[\dA])(?:_\d+m)?\.(?:jp2|tif|tiff)$"
_LANDSAT_FILES = r"(?:^|_)(?:SR_|ST_)?(B\d{1,2})\.(?:tif|tiff)$"
_L89 = _bands(
    ("B1", "coastal", 443, 30),
    ("B2", "blue", 482, 30),
    ("B3", "green", 561, 30),
    ("B4", "red", 655, 30),
    ("B5", "nir08", 865, 30),
    ("B6", "swir16", 1609, 30),
    ("B7", "swir22", 2201, 30),
    ("B8", "pan", 590, 15),
    ("B9", "cirrus", 1374, 30),
    ("B10", "lwir11", 10895, 100),
    ("B11", "lwir12", 12005, 100),
)
_TM = _bands(
    ("B1", "blue", 485, 30),
    ("B2", "green", 560, 30),
    ("B3", "red", 660, 30),
    ("B4", "nir08", 830, 30),
    ("B5", "swir16", 1650, 30),
    ("B6", "lwir", 11450, 120),
    ("B7", "swir22", 2215, 30),
)
_ETM = _TM[:5] + _bands(
    ("B6", "lwir", 11450, 60), ("B7", "swir22", 2220, 30), ("B8", "pan", 710, 15)
)
_WV = _bands(
    ("C", "coastal", 425, 1.84, ("coastal",)),
    ("B", "blue", 480, 1.84),
    ("G", "green", 545, 1.84),
    ("Y", "yellow", 605, 1.84, ("yellow",)),
    ("R", "red", 660, 1.84),
    ("RE", "rededge", 725, 1.84),
    ("N", "nir", 833, 1.84, ("nir1",)),
    ("N2", "nir2", 950, 1.84),
)
_LANDSAT_NOTE = (
    "scale/offset of Collection 2 Level-2 surface reflectance; Level-1 products need the "
    "REFLECTANCE_MULT/ADD values of their MTL file (Sensor.with_scaling)"
)

SENSORS: dict[str, Sensor] = {
    s.name: s
    for s in [
        Sensor(
            "sentinel2-l1c",
            "Sentinel-2 MSI Level-1C (top-of-atmosphere)",
            _S2_BANDS,
            scale=1e-4,
            nodata=0,
            notes="products from processing baseline 04.00 (2022) add an offset of -1000 DN: "
            "use .with_scaling(1e-4, -0.1)",
            band_file_pattern=_S2_FILES,
        ),
        Sensor(
            "sentinel2-l2a",
            "Sentinel-2 MSI Level-2A (surface reflectance)",
            tuple(b for b in _S2_BANDS if b.name != "B10"),
            scale=1e-4,
            nodata=0,
            notes="baseline 04.00 and later: .with_scaling(1e-4, -0.1)",
            band_file_pattern=_S2_FILES,
        ),
        Sensor("landsat5", "Landsat 5 TM", _TM, 2.75e-5, -0.2, 0, _LANDSAT_NOTE, _LANDSAT_FILES),
        Sensor("landsat7", "Landsat 7 ETM+", _ETM, 2.75e-5, -0.2, 0, _LANDSAT_NOTE, _LANDSAT_FILES),
        Sensor(
            "landsat8", "Landsat 8 OLI/TIRS", _L89, 2.75e-5, -0.2, 0, _LANDSAT_NOTE, _LANDSAT_FILES
        ),
        Sensor(
            "landsat9",
            "Landsat 9 OLI-2/TIRS-2",
            _L89,
            2.75e-5,
            -0.2,
            0,
            _LANDSAT_NOTE,
            _LANDSAT_FILES,
        ),
        Sensor(
            "naip",
            "NAIP aerial imagery (R, G, B, NIR; 0.3–1 m)",
            _bands(
                ("R", "red", 635, 0.6, ("band_1",)),
                ("G", "green", 555, 0.6, ("band_2",)),
                ("B", "blue", 465, 0.6, ("band_3",)),
                ("N", "nir", 825, 0.6, ("band_4",)),
            ),
            scale=1 / 255,
        ),
        Sensor(
            "planetscope-4",
            "PlanetScope 4-band surface reflectance (B, G, R, NIR; 3 m)",
            _bands(
                ("B1", "blue", 490, 3),
                ("B2", "green", 565, 3),
                ("B3", "red", 665, 3),
                ("B4", "nir", 865, 3),
            ),
            scale=1e-4,
            nodata=0,
        ),
        Sensor(
            "planetscope-8",
            "PlanetScope SuperDove 8-band surface reflectance (3 m)",
            _bands(
                ("B1", "coastal", 443, 3),
                ("B2", "blue", 490, 3),
                ("B3", "green_i", 531, 3),
                ("B4", "green", 565, 3),
                ("B5", "yellow", 610, 3),
                ("B6", "red", 665, 3),
                ("B7", "rededge", 705, 3),
                ("B8", "nir", 865, 3),
            ),
            scale=1e-4,
            nodata=0,
        ),
        Sensor(
            "spot6",
            "SPOT 6/7 multispectral (B0–B3; 6 m, pan 1.5 m)",
            _bands(
                ("B0", "blue", 485, 6),
                ("B1", "green", 560, 6),
                ("B2", "red", 660, 6),
                ("B3", "nir", 825, 6),
            ),
            scale=1e-4,
            notes="reflectance products are scaled by 10 000; DN products need their DIMAP gains",
        ),
        Sensor(
            "worldview2",
            "WorldView-2 multispectral (8 bands; 1.84 m)",
            _WV,
            notes="DNs are radiometrically corrected counts: composites use a percentile stretch",
        ),
        Sensor(
            "worldview3",
            "WorldView-3 multispectral (8 VNIR bands; 1.24 m)",
            tuple(dataclasses.replace(b, resolution_m=1.24) for b in _WV),
            notes="DNs are radiometrically corrected counts: composites use a percentile stretch",
        ),
        Sensor(
            "rgb",
            "Generic 8-bit RGB (aerial photos, web tiles, screenshots)",
            _bands(
                ("red", "red", 640, None),
                ("green", "green", 550, None),
                ("blue", "blue", 470, None),
            ),
            scale=1 / 255,
        ),
    ]
}


def list_sensors() -> list[str]:
    return list(SENSORS)


def get_sensor(name: str | Sensor) -> Sensor:
    """A preset by name (``sentinel2-l1c``, ``landsat8``, ``naip``…); ``s2``/``l8`` style short names work."""
    if isinstance(name, Sensor):
        return name
    key = str(name).lower().replace("_", "-").replace(" ", "-")
    key = {
        "sentinel2": "sentinel2-l1c",
        "sentinel-2": "sentinel2-l1c",
        "s2": "sentinel2-l1c",
        "s2-l1c": "sentinel2-l1c",
        "s2-l2a": "sentinel2-l2a",
        "l5": "landsat5",
        "l7": "landsat7",
        "l8": "landsat8",
        "l9": "landsat9",
        "planetscope": "planetscope-4",
        "spot": "spot6",
        "spot7": "spot6",
        "worldview": "worldview3",
    }.get(key, key)
    if key not in SENSORS:
        raise ConfigError(f"unknown sensor {name!r}; presets: {', '.join(SENSORS)}")
    return SENSORS[key]


def detect_sensor(band_names: Sequence[str]) -> Sensor | None:
    """A preset guessed from band names alone (None when unsure).

    Sentinel-2 is recognised by its 12 or 13 band ids (``B01``…``B12`` with
    ``B8A``); Landsat 8/9 by ``B1``…``B7`` plus ``B10``/``B11``. Anything else,
    including unnamed bands, returns None: guessing from a band count alone
    would silently pick wrong bands.
    """
    keys = {_norm(n) for n in band_names}
    s2 = {_norm(b.name) for b in _S2_BANDS}
    if "B8A" in keys and len(keys & s2) >= 10:
        return SENSORS["sentinel2-l1c" if "B10" in keys else "sentinel2-l2a"]
    if {"B2", "B3", "B4", "B5", "B10"} <= keys and "B8A" not in keys:
        return SENSORS["landsat8"]
    return None


# ------------------------------------------------------------------ composites


def spectral_index(image: Any, name: str, sensor: Sensor | str | None = None) -> np.ndarray:
    """H×W float32 normalised difference (``ndvi``, ``ndwi``, ``nbr``, ``ndbi``) in [-1, 1].

    Computed on reflectance (the sensor's scale and offset); invalid pixels and
    zero denominators are NaN.
    """
    sensor = sensor_for(image, sensor)
    a_name, b_name = sensor.composite_bands(name)
    ia, ib = sensor.locate(image.band_names, [a_name, b_name])
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
        if values.size > 1_000_000:
            values = values[:: values.size // 1_000_000]
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
    names = sensor.composite_bands(composite)
    indexes = sensor.locate(image.band_names, names)
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
        idx = s.locate(image.band_names, bands)
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
    """``sensor`` as a preset, else the one recognised from the image's band names (or RGB/RGBN)."""
    if sensor is not None:
        return get_sensor(sensor)
    found = detect_sensor(image.band_names)
    if found is not None:
        return found
    lowered = {n.lower() for n in image.band_names}
    if {"red", "green", "blue"} <= lowered:
        rgb = SENSORS["rgb"]
        if "nir" in lowered:
            return dataclasses.replace(
                rgb, name="rgbn", bands=rgb.bands + _bands(("nir", "nir", 830, None))
            )
        return rgb
    raise BandMismatchError(
        f"cannot tell which sensor took this image (bands {', '.join(image.band_names[:16])}); "
        f"pass sensor= (one of {', '.join(SENSORS)})"
    )


def prepare_for_encoder(
    image: Any,
    preprocess: Any,
    *,
    sensor: Sensor | str | None = None,
    composite: str | None = None,
    stretch: np.ndarray | None = None,
) -> Any:
    """The image as the model's preprocessing wants it, keeping size and georeferencing.

    A multi-band model (``len(preprocess.bands) > 3``) gets the image unchanged
    (:func:`geoassist.preprocess.to_pixel_values` selects and normalises its
    bands). An RGB model gets a uint8 composite named red/green/blue when a
    sensor or composite is asked for, or when the image has no red/green/blue
    bands but its sensor can be recognised from band names (Sentinel-2,
    Landsat 8/9); otherwise the image is returned as it is.
    """
    from geoassist.io import Image

    if len(preprocess.bands) > 3:
        return image
    if sensor is None and composite is None:
        lowered = {n.lower() for n in image.band_names}
        if {"red", "green", "blue"} <= lowered or detect_sensor(image.band_names) is None:
            return image
    rgb = make_composite(image, sensor, composite or "true_color", stretch=stretch)
    return Image(
        rgb,
        ["red", "green", "blue"],
        nodata=None,
        transform=image.transform,
        crs=image.crs,
        source=image.source,
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


@dataclass
class BandStack:
    """Separate band files read as one multi-band raster on a common grid, window by window.

    The grid is that of the band files at ``resolution_m`` (default: the finest);
    coarser or offset bands are resampled onto it through a GDAL warped VRT, so a
    window read decodes only the source blocks it touches.
    """

    files: Mapping[str, Path]
    resolution_m: float | None = None
    resampling: str = "bilinear"

    def __post_init__(self) -> None:
        import rasterio

        if not self.files:
            raise ImageNotFoundError("BandStack needs at least one band file")
        self.band_names = list(self.files)
        opened = [rasterio.open(p) for p in self.files.values()]
        self._sources = opened
        res = [abs(ds.transform.a) for ds in opened]
        target = min(res) if self.resolution_m is None else self.resolution_m
        ref = min(opened, key=lambda ds: abs(abs(ds.transform.a) - target))
        if abs(abs(ref.transform.a) - target) > 1e-6:
            # No file at this resolution: the finest file's extent on a target-sized grid.
            from affine import Affine

            t = ref.transform
            scale = target / abs(t.a)
            self.transform = t @ Affine.scale(scale)
            self.width = int(round(ref.width / scale))
            self.height = int(round(ref.height / scale))
        else:
            self.transform, self.width, self.height = ref.transform, ref.width, ref.height
        self.crs = ref.crs
        self.dtype = np.result_type(*[ds.dtypes[0] for ds in opened]).name
        self.nodata = ref.nodata
        self.count = len(opened)
        self._aligned_sources = [self._aligned(ds) for ds in opened]

    @classmethod
    def from_folder(cls, folder: str | Path, sensor: Sensor | str | None = None, **kw) -> BandStack:
        return cls(find_band_files(folder, sensor), **kw)

    def _aligned(self, ds: Any) -> Any:
        from rasterio.enums import Resampling
        from rasterio.vrt import WarpedVRT

        same = (
            ds.width == self.width
            and ds.height == self.height
            and ds.transform.almost_equals(self.transform)
        )
        if same:
            return ds
        return WarpedVRT(
            ds,
            crs=self.crs,
            transform=self.transform,
            width=self.width,
            height=self.height,
            resampling=Resampling[self.resampling],
        )

    def read(
        self,
        window: Any = None,
        out_shape: tuple[int, int] | None = None,
        resampling: str = "bilinear",
    ) -> np.ndarray:
        """(bands, h, w) array of ``window`` (a rasterio Window; None = everything)."""
        from rasterio.enums import Resampling

        layers = [
            src.read(
                1, window=window, out_shape=out_shape, resampling=Resampling[resampling]
            ).astype(self.dtype, copy=False)
            for src in self._aligned_sources
        ]
        return np.stack(layers)

    def close(self) -> None:
        for src, ds in zip(self._aligned_sources, self._sources, strict=True):
            if src is not ds:
                src.close()
            ds.close()

    def __enter__(self) -> BandStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def load_band_files(
    source: str | Path | Mapping[str, str | Path] | Sequence[str | Path],
    *,
    sensor: Sensor | str | None = None,
    bands: Sequence[str] | None = None,
    resolution_m: float | None = None,
    window: tuple[int, int, int, int] | None = None,
) -> Any:
    """An :class:`~geoassist.io.Image` stacked from band files (a ``.SAFE``/band folder, a list, or a mapping).

    Bands are named by their product ids (``B01``…``B12``, ``B8A``) and resampled
    onto the ``resolution_m`` grid (default: the finest band). ``window=(col_off,
    row_off, width, height)`` is in pixels of that grid.
    """
    from rasterio.windows import Window

    from geoassist.io import Image

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
    with BandStack(files, resolution_m=resolution_m) as stack:
        win = Window(*window) if window is not None else None
        data = stack.read(win)
        transform = stack.transform
        if win is not None:
            from affine import Affine

            transform = transform @ Affine.translation(win.col_off, win.row_off)
        return Image(
            np.moveaxis(data, 0, -1),
            stack.band_names,
            nodata=stack.nodata,
            transform=transform,
            crs=stack.crs,
            source=str(source) if isinstance(source, (str, Path)) else None,
        )
