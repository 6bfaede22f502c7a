"""From the region decoder's maps to geometry: peaks of the centre heatmap become scored
instances (oriented box, horizontal box, polygon), the mask logits a boolean mask.

Everything here works on one query's maps, in pixels of the decoder's input (a square of
``input_size`` pixels, ``grid`` cells per side); :func:`decode_query` scales the result to the
image's own size. The conventions are stage 0's (:mod:`geoassist.train.dense_targets`): an
object belongs to the cell holding its centre, ``box_size`` is ``log(w / cell), log(h / cell)``
and ``box_angle`` is ``(sin 2a, cos 2a)`` (through ``tanh``) with ``a`` in the answer grammar's
convention (degrees, counter-clockwise on screen, see docs/FORMATS.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from geoassist.format_grammar import obbox_to_corners


@dataclass
class RegionInstance:
    """One decoded instance, in pixels of the image it was decoded for."""

    score: float
    cx: float
    cy: float
    w: float
    h: float
    angle_deg: float
    box: tuple[float, float, float, float]  # the horizontal box around the oriented one

    def corners(self) -> np.ndarray:
        return obbox_to_corners(self.cx, self.cy, self.w, self.h, self.angle_deg)


@dataclass
class RegionResult:
    """What one ``<seg>`` token decoded to: instances (best first) and a mask of the image."""

    instances: list[RegionInstance] = field(default_factory=list)
    mask: np.ndarray | None = None  # (H, W) bool at the image's size

    @property
    def empty(self) -> bool:
        return not self.instances and (self.mask is None or not self.mask.any())


def find_peaks(heat: torch.Tensor, threshold: float, limit: int) -> list[tuple[float, int, int]]:
    """(score, row, col) of the local maxima (3×3) of ``heat`` (probabilities, (g, g)) that reach
    ``threshold``, best first, at most ``limit``."""
    pooled = F.max_pool2d(heat[None, None], kernel_size=3, stride=1, padding=1)[0, 0]
    keep = (heat >= pooled) & (heat >= threshold)
    rows, cols = torch.nonzero(keep, as_tuple=True)
    scores = heat[rows, cols]
    order = torch.argsort(scores, descending=True)[:limit]
    return [(float(scores[i]), int(rows[i]), int(cols[i])) for i in order.tolist()]


def angle_from_map(sin2: float, cos2: float) -> float:
    """The box angle in degrees in [-90, 90) from the (tanh-squashed) doubled-angle pair."""
    angle = 0.5 * math.degrees(math.atan2(sin2, cos2))
    return ((angle + 90.0) % 180.0) - 90.0


def instances_from_maps(
    centre_logits: torch.Tensor,
    box_size: torch.Tensor,
    box_angle: torch.Tensor,
    *,
    input_size: int,
    threshold: float,
    limit: int,
    offset: torch.Tensor | None = None,
) -> list[RegionInstance]:
    """Instances in decoder-input pixels from one query's maps: ``centre_logits`` (g, g),
    ``box_size`` (2, g, g), ``box_angle`` (2, g, g) and optionally ``offset`` (2, g, g), the
    centre's place inside its cell (logits of x, y in [0, 1]; the cell's middle without it)."""
    grid = centre_logits.shape[-1]
    cell = input_size / grid
    heat = torch.sigmoid(centre_logits.float())
    out = []
    for score, row, col in find_peaks(heat, threshold, limit):
        dx, dy = (0.5, 0.5)
        if offset is not None:
            dx, dy = (float(torch.sigmoid(offset[k, row, col])) for k in (0, 1))
        cx, cy = (col + dx) * cell, (row + dy) * cell
        w, h = (math.exp(min(float(box_size[k, row, col]), 10.0)) * cell for k in (0, 1))
        angle = angle_from_map(
            math.tanh(float(box_angle[0, row, col])), math.tanh(float(box_angle[1, row, col]))
        )
        corners = obbox_to_corners(cx, cy, w, h, angle)
        x1, y1 = np.clip(corners.min(axis=0), 0, input_size)
        x2, y2 = np.clip(corners.max(axis=0), 0, input_size)
        out.append(RegionInstance(score, cx, cy, w, h, angle, (float(x1), float(y1), float(x2), float(y2))))
    return out


def scale_instance(inst: RegionInstance, sx: float, sy: float) -> RegionInstance:
    """``inst`` moved from decoder-input pixels to an image ``sx``, ``sy`` times as large per axis."""
    x1, y1, x2, y2 = inst.box
    box = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
    if math.isclose(sx, sy, rel_tol=1e-9):
        return RegionInstance(inst.score, inst.cx * sx, inst.cy * sy, inst.w * sx, inst.h * sy,
                              inst.angle_deg, box)  # fmt: skip
    from geoassist.format_grammar import corners_to_obbox

    cx, cy, w, h, angle = corners_to_obbox(inst.corners() * [sx, sy])
    return RegionInstance(inst.score, cx, cy, w, h, angle, box)


def mask_from_logits(mask_logits: torch.Tensor, image_size: tuple[int, int], threshold: float) -> np.ndarray:
    """(g, g) mask logits → an (H, W) bool mask of an image of ``image_size`` (width, height),
    upsampled bilinearly (at most 1024 px a side, then by nearest neighbour)."""
    width, height = image_size
    work = (min(height, 1024), min(width, 1024))
    prob = torch.sigmoid(
        F.interpolate(mask_logits.float()[None, None], size=work, mode="bilinear", align_corners=False)
    )[0, 0]
    mask = (prob >= threshold).cpu().numpy()
    if work != (height, width):
        rows = (np.arange(height) * work[0] // height).clip(0, work[0] - 1)
        cols = (np.arange(width) * work[1] // width).clip(0, work[1] - 1)
        mask = mask[rows][:, cols]
    return mask


def decode_query(
    maps: dict[str, torch.Tensor],
    index: int,
    *,
    input_size: int,
    image_size: tuple[int, int],
    score_threshold: float,
    mask_threshold: float,
    max_instances: int,
) -> RegionResult:
    """Query ``index`` of the decoder's output ``maps`` as instances and a mask of an image of
    ``image_size`` (width, height)."""
    instances = instances_from_maps(
        maps["centre"][index, 0],
        maps["box_size"][index],
        maps["box_angle"][index],
        offset=maps["offset"][index] if "offset" in maps else None,
        input_size=input_size,
        threshold=score_threshold,
        limit=max_instances,
    )
    sx, sy = image_size[0] / input_size, image_size[1] / input_size
    instances = [scale_instance(i, sx, sy) for i in instances]
    mask = mask_from_logits(maps["mask"][index, 0], image_size, mask_threshold)
    return RegionResult(instances, mask)
