"""Sensor presets: each product's bands (ids, common names, wavelengths, resolutions) and scaling.

A :class:`Sensor` knows its bands in file order and how its digital numbers
become reflectance (``reflectance = DN * scale + offset``); :data:`SENSORS`
holds the presets by name, :func:`get_sensor` finds one by name or short name
and :func:`detect_sensor` recognises Sentinel-2 and Landsat 8/9 from band names.
What is made from these presets (band selection, composites, stretch) lives in
:mod:`geoassist.sensors`, which re-exports everything here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from geoassist.errors import BandMismatchError, ConfigError

__all__ = [
    "Band",
    "COMPOSITES",
    "INDICES",
    "SENSORS",
    "Sensor",
    "detect_sensor",
    "get_sensor",
    "list_sensors",
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
