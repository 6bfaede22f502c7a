"""Stage 0's loss with dense heads: one tower pass, the contrastive term and one term per head.

The batch comes from :func:`geoassist.train.dense_data.collate_stage0`: a target ``t_<key>``
covers only the items listed in ``t_<key>_index``, so GeoSynth samples (every target) and real
samples (the labels they have) share a batch. Both dates of a pair go through the same tower
in the same pass; the change head reads both dense maps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _focal(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss on Gaussian-splatted centre heatmaps."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.ge(0.999).float()
    neg = 1.0 - pos
    pos_loss = -torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = -torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    return (pos_loss.sum() + neg_loss.sum()) / pos.sum().clamp(min=1.0)


def dense_stage0_loss(module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted sum of every term that has targets in ``batch``, and each term's value."""
    vision, heads, weights = module.model.vision, module.dense, module.dense_weights
    pixels = batch["pixel_values"]
    n = pixels.shape[0]
    pair_b = batch.get("pixel_values_b")
    if pair_b is not None:
        pixels = torch.cat([pixels, pair_b])
    tokens, pooled, grid = vision.forward_features(pixels)
    out = heads(tokens, grid, vision.adapt(pixels))
    terms: dict[str, torch.Tensor] = {}

    texts = batch["text"]
    with_text = [i for i, t in enumerate(texts) if t]
    if weights.get("contrastive") and len(with_text) >= 2:
        terms["contrastive"] = module.head.loss(pooled[with_text], [texts[i] for i in with_text])

    scene_terms = []
    for name in heads.scene:
        rows = [(i, s[name]) for i, s in enumerate(batch["scene"]) if name in s]
        if rows:
            idx = torch.tensor([i for i, _ in rows], device=pooled.device)
            target = torch.tensor([c for _, c in rows], device=pooled.device)
            scene_terms.append(F.cross_entropy(out[f"scene:{name}"][idx], target))
    if scene_terms:
        terms["scene"] = torch.stack(scene_terms).mean()

    def rows(key: str) -> torch.Tensor | None:
        index = batch.get(f"t_{key}_index")
        return None if index is None else index.to(pooled.device)

    if (idx := rows("presence")) is not None:
        mask = batch["t_presence_mask"].float()
        if mask.sum() > 0:
            bce = F.binary_cross_entropy_with_logits(out["presence"][idx], batch["t_presence"], reduction="none")
            terms["presence"] = (bce * mask).sum() / mask.sum()
    if (idx := rows("count")) is not None:
        mask = batch["t_count_mask"].float()
        if mask.sum() > 0:
            err = F.smooth_l1_loss(out["count"][idx], torch.log1p(batch["t_count"]), reduction="none")
            terms["count"] = (err * mask).sum() / mask.sum()
    if (idx := rows("semantic")) is not None:
        mask = batch["t_semantic_mask"].float()
        logp = F.log_softmax(out["semantic"][idx].float(), dim=1)
        ce = -(batch["t_semantic"] * logp).sum(dim=1)
        if mask.sum() > 0:
            terms["semantic"] = (ce * mask).sum() / mask.sum()
    if (idx := rows("centre")) is not None:
        cls_mask = batch["t_centre_mask"][:, :, None, None].float()
        logits = out["centre"][idx]
        # classes whose objects are not listed are left out: their logits get no gradient
        terms["centre"] = _focal(logits * cls_mask + (-20.0) * (1 - cls_mask), batch["t_centre"])
        box_mask = batch["t_box_mask"].float()
        if box_mask.sum() > 0:
            size_err = F.l1_loss(out["box_size"][idx], batch["t_box_size"], reduction="none").sum(1)
            angle_err = F.l1_loss(torch.tanh(out["box_angle"][idx]), batch["t_box_angle"], reduction="none").sum(1)
            terms["box"] = ((size_err + angle_err) * box_mask).sum() / box_mask.sum()
    if (idx := rows("change")) is not None and pair_b is not None:
        pair_index = batch["pair_index"].to(pooled.device)
        position = {int(i): n + j for j, i in enumerate(pair_index.tolist())}
        b_rows = torch.tensor([position[int(i)] for i in idx.tolist()], device=pooled.device)
        logits = heads.change_logits(out["dense"][idx], out["dense"][b_rows])[:, 0]
        terms["change"] = F.binary_cross_entropy_with_logits(logits.float(), batch["t_change"])

    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    if not isinstance(total, torch.Tensor):  # no term had targets: a zero that still has a graph
        total = pooled.sum() * 0.0
    return total, {k: float(v.detach()) for k, v in terms.items()}
