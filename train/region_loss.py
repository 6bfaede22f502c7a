"""The region decoder's targets and losses (stage 2 and the decoder's own pretraining).

One :class:`RegionTarget` per ``<seg>`` token: the instances it refers to (oriented boxes in
the decoder's input pixels) and, where the record has one, the mask. :func:`target_maps`
draws them at the decoder's cell grid in stage 0's conventions (Gaussian centre splats, box
size as ``log(side / cell)``, angle as ``(sin 2a, cos 2a)``, and the centre's place inside its
cell); :func:`region_loss` adds CenterNet's focal loss on centres, L1 on size, angle and offset
plus GIoU on the boxes at the centre cells, and BCE + Dice on masks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from geoassist.train.dense_loss import _focal

DEFAULT_WEIGHTS = {"centre": 1.0, "box_l1": 1.0, "giou": 1.0, "mask_bce": 1.0, "mask_dice": 1.0}


@dataclass
class RegionTarget:
    """What one ``<seg>`` refers to, in pixels of the decoder's square input."""

    instances: list[tuple[float, float, float, float, float]] = field(default_factory=list)  # cx, cy, w, h, angle°
    mask: np.ndarray | None = None  # (S, S) bool, or None when the record has no mask


def target_maps(target: RegionTarget, grid: int, input_size: int) -> dict[str, torch.Tensor]:
    """The maps one query is supervised with, at ``grid`` cells over ``input_size`` pixels."""
    cell = input_size / grid
    heat = np.zeros((grid, grid), np.float32)
    size = np.zeros((2, grid, grid), np.float32)
    angle = np.zeros((2, grid, grid), np.float32)
    offset = np.zeros((2, grid, grid), np.float32)
    box = np.zeros((4, grid, grid), np.float32)
    reg = np.zeros((grid, grid), bool)
    yy, xx = np.mgrid[0:grid, 0:grid].astype(np.float32)
    for cx, cy, w, h, a in target.instances:
        gx, gy = min(max(int(cx // cell), 0), grid - 1), min(max(int(cy // cell), 0), grid - 1)
        sigma = max(0.5, 0.15 * math.sqrt(max(w * h, 1.0)) / cell)
        heat = np.maximum(heat, np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * sigma**2)))
        size[:, gy, gx] = (math.log(max(w, 1.0) / cell), math.log(max(h, 1.0) / cell))
        angle[:, gy, gx] = (math.sin(math.radians(2 * a)), math.cos(math.radians(2 * a)))
        offset[:, gy, gx] = (min(max(cx / cell - gx, 0.0), 1.0), min(max(cy / cell - gy, 0.0), 1.0))
        box[:, gy, gx] = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        reg[gy, gx] = True
    out = {
        "centre": torch.from_numpy(heat),
        "box_size": torch.from_numpy(size),
        "box_angle": torch.from_numpy(angle),
        "offset": torch.from_numpy(offset),
        "box": torch.from_numpy(box),
        "reg": torch.from_numpy(reg),
    }
    if target.mask is not None:
        out["mask"] = torch.from_numpy(np.asarray(target.mask, np.float32))
    return out


def _giou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Generalised IoU of matching rows of (N, 4) boxes x1, y1, x2, y2."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt, rb = torch.max(a[:, :2], b[:, :2]), torch.min(a[:, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(a[:, 2:], b[:, 2:]) - torch.min(a[:, :2], b[:, :2])).clamp(min=0).prod(dim=1)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def region_loss(
    maps: dict[str, torch.Tensor],
    targets: list[dict[str, torch.Tensor]],
    input_size: int,
    weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The decoder loss of Q queries: ``maps`` (the decoder's output, Q first) against ``targets``
    (:func:`target_maps` of each query, on the maps' device). Returns the weighted sum and its
    terms."""
    weights = {**DEFAULT_WEIGHTS, **(weights or {})}
    grid = maps["centre"].shape[-1]
    cell = input_size / grid
    device = maps["centre"].device
    t = {k: torch.stack([q[k] for q in targets]).to(device) for k in targets[0] if k != "mask"}
    terms: dict[str, torch.Tensor] = {"centre": _focal(maps["centre"][:, 0].float(), t["centre"])}
    reg = t["reg"]
    if bool(reg.any()):
        q, gy, gx = torch.nonzero(reg, as_tuple=True)

        def at(name: str) -> torch.Tensor:
            return maps[name][q, :, gy, gx].float()

        l1 = (
            F.l1_loss(at("box_size"), t["box_size"][q, :, gy, gx])
            + F.l1_loss(torch.tanh(at("box_angle")), t["box_angle"][q, :, gy, gx])
            + F.l1_loss(torch.sigmoid(at("offset")), t["offset"][q, :, gy, gx])
        )
        centre = (torch.stack([gx, gy], dim=1).float() + torch.sigmoid(at("offset"))) * cell
        half = torch.exp(at("box_size").clamp(max=10.0)) * cell / 2
        predicted = torch.cat([centre - half, centre + half], dim=1)
        terms["box_l1"] = l1
        terms["giou"] = (1 - _giou(predicted, t["box"][q, :, gy, gx])).mean()
    with_mask = [i for i, q in enumerate(targets) if "mask" in q]
    if with_mask:
        truth = torch.stack([targets[i]["mask"] for i in with_mask]).to(device)
        logits = F.interpolate(
            maps["mask"][with_mask].float(), size=truth.shape[-2:], mode="bilinear", align_corners=False
        )[:, 0]
        terms["mask_bce"] = F.binary_cross_entropy_with_logits(logits, truth)
        prob = torch.sigmoid(logits).flatten(1)
        flat = truth.flatten(1)
        dice = 1 - (2 * (prob * flat).sum(1) + 1) / (prob.sum(1) + flat.sum(1) + 1)
        terms["mask_dice"] = dice.mean()
    total = sum(weights[k] * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}
