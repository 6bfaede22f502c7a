"""Colours and spectral signatures, per land-cover class and per object material.

HR colours are 8-bit sRGB as delivered by aerial orthophoto products; they were
set against per-class statistics measured inside the labels of the real
samples (DOTA / iSAID vehicles and tanks, LEVIR-CD new buildings, RSVQA-HR
scenes: scene means about 95–130 DN, within-scene std 35–50 DN, asphalt and
vegetation well below 100 DN). MS signatures are top-of-atmosphere
reflectances (Sentinel-2 L1C scaled ×10 000 when written), with the textbook
shapes: vegetation's red edge and NIR plateau, water dark beyond 700 nm, bare
soil rising into SWIR, built-up flat and bright.
"""

from __future__ import annotations

import numpy as np

# Land-cover codes shared by the HR and MS generators (the semantic mask's first classes).
LANDCOVER = ["bare_soil", "grassland", "forest", "farmland", "water", "impervious", "road"]
LC = {name: i for i, name in enumerate(LANDCOVER)}

# Object classes that get their own semantic code after the land-cover codes.
OBJECT_CLASSES = [
    "building",
    "small_vehicle",
    "large_vehicle",
    "ship",
    "airplane",
    "storage_tank",
    "soccer_field",
    "tennis_court",
    "ground_track_field",
    "swimming_pool",
    "tree",
    "bridge",
]
SEMANTIC_CLASSES = LANDCOVER + OBJECT_CLASSES
SEM = {name: i for i, name in enumerate(SEMANTIC_CLASSES)}

SEASONS = ("spring", "summer", "autumn", "winter")

# Base HR colour per land cover and season (R, G, B).
_HR_LC = {
    "summer": {
        "bare_soil": (150, 132, 110),
        "grassland": (102, 116, 78),
        "forest": (62, 80, 52),
        "farmland": (118, 122, 86),
        "water": (46, 60, 66),
        "impervious": (138, 136, 130),
        "road": (92, 92, 94),
    },
    "spring": {
        "bare_soil": (140, 122, 102),
        "grassland": (96, 122, 72),
        "forest": (60, 82, 52),
        "farmland": (110, 120, 82),
        "water": (50, 64, 70),
        "impervious": (136, 134, 130),
        "road": (90, 90, 92),
    },
    "autumn": {
        "bare_soil": (142, 120, 98),
        "grassland": (128, 122, 84),
        "forest": (84, 78, 52),
        "farmland": (136, 124, 92),
        "water": (46, 58, 62),
        "impervious": (134, 132, 128),
        "road": (90, 90, 92),
    },
    "winter": {
        "bare_soil": (128, 116, 102),
        "grassland": (132, 128, 104),
        "forest": (74, 74, 64),
        "farmland": (140, 130, 110),
        "water": (56, 66, 72),
        "impervious": (142, 140, 138),
        "road": (96, 96, 98),
    },
}

# Multiplicative texture amplitudes per land cover: (fine, mid).
HR_TEXTURE = {
    "bare_soil": (0.08, 0.07),
    "grassland": (0.07, 0.07),
    "forest": (0.08, 0.08),
    "farmland": (0.04, 0.06),
    "water": (0.015, 0.05),
    "impervious": (0.04, 0.03),
    "road": (0.03, 0.03),
}

CROP_COLOURS = {
    "green crop": (92, 118, 62),
    "young crop": (118, 128, 84),
    "ripe wheat": (176, 160, 112),
    "ploughed soil": (122, 100, 80),
    "stubble": (166, 152, 122),
    "dark crop": (70, 92, 52),
}

ROOF_COLOURS = {
    "red": (150, 82, 66),
    "grey": (124, 124, 126),
    "dark grey": (74, 74, 80),
    "white": (212, 212, 206),
    "brown": (122, 96, 80),
    "blue": (82, 108, 146),
    "beige": (176, 162, 136),
    "green": (84, 110, 92),
}
INDUSTRIAL_ROOFS = ("white", "grey", "blue", "beige", "dark grey")
RESIDENTIAL_ROOFS = ("red", "grey", "dark grey", "brown", "beige", "white", "red", "brown")

VEHICLE_COLOURS = {
    "white": (214, 214, 212),
    "black": (34, 34, 38),
    "silver": (168, 170, 174),
    "grey": (104, 104, 108),
    "red": (148, 40, 38),
    "blue": (44, 64, 118),
}
SHIP_COLOURS = {"white": (214, 214, 210), "grey": (130, 132, 136), "red": (140, 56, 48), "blue": (60, 84, 120)}
TANK_COLOURS = {"white": (206, 206, 200), "grey": (150, 150, 148), "beige": (182, 172, 150)}


def hr_landcover_colours(season: str, rng: np.random.Generator) -> np.ndarray:
    """(n_landcover, 3) float32 colours for one scene, jittered per class."""
    table = _HR_LC[season]
    base = np.array([table[name] for name in LANDCOVER], np.float32)
    jitter = rng.normal(1.0, 0.1, size=(len(LANDCOVER), 1)).astype(np.float32)
    tint = rng.normal(1.0, 0.03, size=(len(LANDCOVER), 3)).astype(np.float32)
    return base * jitter * tint


# Sentinel-2 band names, wavelengths (nm) and native resolution (m).
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_WAVELENGTH_NM = [443, 490, 560, 665, 705, 740, 783, 842, 865, 945, 1375, 1610, 2190]
S2_RESOLUTION_M = [60, 10, 10, 10, 20, 20, 20, 10, 20, 60, 60, 20, 20]

# Top-of-atmosphere reflectance signatures (13 bands) per land cover, calibrated against a real
# Sentinel-2 L1C scene (bench/calibrate_ms.py; table in docs/SYNTH.md): per-class means of the
# generated scenes are within 15 % of the real ones in most bands.
S2_SIGNATURES = {
    "bare_soil": [0.146, 0.119, 0.116, 0.132, 0.154, 0.168, 0.181, 0.187, 0.201, 0.085, 0.0015, 0.264, 0.204],
    "grassland": [0.137, 0.109, 0.088, 0.060, 0.105, 0.218, 0.249, 0.251, 0.274, 0.113, 0.0014, 0.147, 0.075],
    "forest": [0.114, 0.080, 0.061, 0.035, 0.073, 0.179, 0.213, 0.217, 0.236, 0.096, 0.0012, 0.094, 0.041],
    "farmland": [0.139, 0.106, 0.091, 0.053, 0.103, 0.245, 0.297, 0.300, 0.324, 0.123, 0.0014, 0.137, 0.063],
    "water": [0.143, 0.119, 0.094, 0.069, 0.058, 0.035, 0.030, 0.031, 0.019, 0.006, 0.0008, 0.005, 0.004],
    "impervious": [0.162, 0.143, 0.110, 0.112, 0.125, 0.137, 0.145, 0.148, 0.158, 0.070, 0.0015, 0.189, 0.152],
    "road": [0.143, 0.119, 0.090, 0.088, 0.095, 0.102, 0.107, 0.109, 0.115, 0.054, 0.0015, 0.143, 0.118],
}


def ms_to_rgb(dn: np.ndarray) -> np.ndarray:
    """8-bit true colour (B04, B03, B02) of 13-band DN, as RSVQA-LR publishes its tiles."""
    rgb = dn[..., [3, 2, 1]].astype(np.float32) * (255.0 / np.array([2500.0, 2700.0, 3300.0], np.float32))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def s2_signatures(season: str, rng: np.random.Generator) -> np.ndarray:
    """(n_landcover, 13) float32 reflectances for one scene, with season and jitter.

    Autumn and winter lower the NIR plateau and raise red for vegetation (less
    chlorophyll), never enough to bring vegetation's NDVI near water's.
    """
    sig = np.array([S2_SIGNATURES[name] for name in LANDCOVER], np.float32)
    veg = [LC["grassland"], LC["forest"], LC["farmland"]]
    if season in ("autumn", "winter"):
        k = 0.75 if season == "autumn" else 0.6
        sig[veg, 4:9] *= k
        sig[veg, 3] *= 1.6 if season == "winter" else 1.3
        sig[veg, 11:13] *= 1.15
    sig *= rng.normal(1.0, 0.05, size=(len(LANDCOVER), 1)).astype(np.float32)
    return sig
