"""Cached periodic noise bases, sampled by random crop, flip and transpose.

Synthesising fractal noise per scene costs more than everything else put
together, so a few periodic fields are built once per process (FFT-filtered
white noise with a fixed seed, so every process has the same bases) and each
scene takes windows from them. Periodicity lets a window wrap around, which
also serves scenes larger than a base.
"""

from __future__ import annotations

from functools import cache

import numpy as np

BASE_PX = 1024

# name -> (spectral exponent, low cut-off in cycles/px, high cut-off in cycles/px)
_SPECS: dict[str, tuple[float, float, float]] = {
    "grain": (0.0, 0.15, 0.5),  # pixel-scale sensor/texture grain
    "fine": (1.0, 0.04, 0.35),  # crowns, gravel, roof texture (2–25 px)
    "mid": (2.0, 0.008, 0.12),  # patchiness (8–120 px)
    "coarse": (2.5, 0.0, 0.012),  # slow illumination / moisture variation (> 80 px)
}


@cache
def _base(name: str) -> np.ndarray:
    beta, lo, hi = _SPECS[name]
    rng = np.random.default_rng(sum(map(ord, name)) * 7919)
    white = rng.standard_normal((BASE_PX, BASE_PX)).astype(np.float32)
    fy = np.fft.fftfreq(BASE_PX)[:, None]
    fx = np.fft.rfftfreq(BASE_PX)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[(f < lo) | (f > hi)] = 0.0
    amp[0, 0] = 0.0
    field = np.fft.irfft2(np.fft.rfft2(white) * amp, s=(BASE_PX, BASE_PX)).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-8
    # Tile 2x2 so that any window up to BASE_PX can be sliced without wrapping.
    return np.tile(field, (2, 2))


def noise(rng: np.random.Generator, shape: tuple[int, int], name: str = "mid") -> np.ndarray:
    """A zero-mean, unit-variance float32 field of ``shape`` from the named base."""
    base = _base(name)
    h, w = shape
    k = int(rng.integers(8))
    oy, ox = (int(v) for v in rng.integers(0, BASE_PX, size=2))
    if h <= BASE_PX and w <= BASE_PX:
        if k & 4:  # transpose: take the window with swapped sides
            win = base[oy : oy + w, ox : ox + h].T
        else:
            win = base[oy : oy + h, ox : ox + w]
    else:
        ys = (np.arange(h) + oy) % BASE_PX
        xs = (np.arange(w) + ox) % BASE_PX
        win = base[np.ix_(ys, xs)]
    if k & 1:
        win = win[::-1]
    if k & 2:
        win = win[:, ::-1]
    return win


def warm_up() -> None:
    """Build every base now (workers call this once so that timings exclude it)."""
    for name in _SPECS:
        _base(name)
    for r in CROWN_RADII:
        _crowns(r)


@cache
def _crowns(radius_px: int) -> np.ndarray:
    """A periodic canopy height field: densely packed round crowns of about ``radius_px``."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(1000 + radius_px)
    n = int(BASE_PX * BASE_PX / (1.7 * radius_px) ** 2)
    impulses = np.zeros((BASE_PX, BASE_PX), np.float32)
    ys, xs = rng.integers(0, BASE_PX, n), rng.integers(0, BASE_PX, n)
    np.add.at(impulses, (ys, xs), rng.uniform(0.6, 1.4, n).astype(np.float32))
    h = gaussian_filter(impulses, sigma=radius_px * 0.55, mode="wrap")
    h = np.sqrt(np.clip(h / np.quantile(h, 0.98), 0, 1.2))  # rounder tops, narrower gaps
    return np.tile(h.astype(np.float32), (2, 2))


CROWN_RADII = (2, 3, 5, 8)


def crowns(rng: np.random.Generator, shape: tuple[int, int], radius_px: float) -> np.ndarray:
    """A window of the canopy field whose crown radius is closest to ``radius_px`` (no flips: shading needs the true sun side)."""
    r = min(CROWN_RADII, key=lambda v: abs(v - radius_px))
    base = _crowns(r)
    h, w = shape
    oy, ox = (int(v) for v in rng.integers(0, BASE_PX, size=2))
    if h <= BASE_PX and w <= BASE_PX:
        return base[oy : oy + h, ox : ox + w]
    ys = (np.arange(h) + oy) % BASE_PX
    xs = (np.arange(w) + ox) % BASE_PX
    return base[np.ix_(ys, xs)]
