"""COCO run-length encoding of boolean masks: the one implementation answers and recipes share.

Masks are ``(height, width)`` boolean arrays. COCO stores them column-major (Fortran
order) as alternating runs of 0s and 1s, starting with a run of 0s (which may be
empty). :func:`mask_to_rle` writes the uncompressed form, ``{"size": [h, w],
"counts": [...]}``; :func:`rle_to_mask` reads it and COCO's compressed string form.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geoassist.errors import GeoAssistError

__all__ = ["RLEError", "mask_to_rle", "rle_to_mask"]


class RLEError(GeoAssistError, ValueError):
    """A run-length encoding does not describe a mask of its stated size."""


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """A boolean (h, w) mask → uncompressed COCO RLE ``{"size": [h, w], "counts": [...]}``."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise RLEError(f"a mask is a 2-D (height, width) array, got shape {mask.shape}")
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]])).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """A COCO RLE (``counts`` as a list, or COCO's compressed string) → boolean (h, w) mask.

    Runs that end before the mask does leave the rest False; runs past its end raise
    :class:`RLEError`.
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as exc:
        raise RLEError(
            "an RLE is a dict with 'size': [height, width] and 'counts' (a list or COCO's string)"
        ) from exc
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _string_to_counts(counts)
    flat = np.zeros(height * width, dtype=bool)
    position, value = 0, False
    for run in counts:
        run = int(run)
        if run < 0 or position + run > flat.size:
            raise RLEError(
                f"RLE counts run past the mask size ({height}x{width}); "
                "check that 'size' is [height, width]"
            )
        if value:
            flat[position : position + run] = True
        position += run
        value = not value
    return flat.reshape((height, width), order="F")


def _string_to_counts(text: str) -> list[int]:
    # COCO's compressed form: each count is a signed varint in 5-bit groups offset by 48 ('0'),
    # and from the third count on it is stored as a difference to the count two places back.
    counts: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text):
                raise RLEError("the compressed RLE string ends inside a count")
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts
