"""Stage-2 records in the ``<seg>`` form, with the region decoder's targets.

A record that carries geometry — detection, grounding and referring boxes (oriented where the
record has corners), referring segmentation masks, the change masks of ``change_seg`` records —
is supervised with an answer in which every referred thing is one ``<seg>`` token
(``<ref>ship</ref><seg>`` for a class, ``<seg>`` for one expression or one mask), and its
geometry goes to the decoder losses (:mod:`geoassist.train.region_loss`); the digits of the
answer grammar are never supervised. An absent target keeps its ``none`` answer and has no
token. Other records are unchanged. A mask is the record's ``targets.mask`` (a PNG, with
``mask_values``) or ``targets.mask_rle``, read as the scorers read it
(:func:`geoassist.data_recipes.load_target_mask`).

A ``change_seg`` record's token reads the pair's fused scene map, so the decoder's mask for it
is the change mask, supervised by the record's mask; it names no instances, so its centre map
is supervised empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoassist.format_grammar import corners_to_obbox
from geoassist.model.region_decoder import SEG_TOKEN
from geoassist.train.region_loss import RegionTarget, target_maps

BOX_KINDS = ("detection", "grounding")  # one <seg> per label
SINGLE_KINDS = ("referring",)  # one <seg> for the expression's box
MASK_KINDS = ("refer_seg", "change_seg")  # one <seg> for the mask (a pair's: the change mask)


def _instances(targets: dict[str, Any]) -> list[tuple[str | None, tuple[float, ...]]]:
    """(label, (cx, cy, w, h, angle°)) of each target object, in original pixels."""
    boxes = targets.get("boxes") or []
    oboxes = targets.get("obboxes") or []
    out = []
    if oboxes and len(oboxes) == len(boxes) or oboxes and not boxes:
        for item in oboxes:
            out.append((item.get("label"), tuple(corners_to_obbox(item["points"]))))
        return out
    for item in boxes:
        x1, y1, x2, y2 = (float(v) for v in item["box"])
        out.append((item.get("label"), ((x1 + x2) / 2, (y1 + y2) / 2, abs(x2 - x1), abs(y2 - y1), 0.0)))
    return out


def _resized_mask(mask: np.ndarray, side: int) -> np.ndarray:
    rows = (np.arange(side) * mask.shape[0] // side).clip(0, mask.shape[0] - 1)
    cols = (np.arange(side) * mask.shape[1] // side).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def _image_size(image_root: Path, record: dict[str, Any]) -> tuple[int, int]:
    meta = record.get("meta") or {}
    if meta.get("width") and meta.get("height"):
        return int(meta["width"]), int(meta["height"])
    from PIL import Image

    with Image.open(image_root / record["images"][-1]) as im:
        return im.size


def seg_answer_estimate(record: dict[str, Any]) -> str | None:
    """The ``<seg>`` answer :func:`seg_form` gives ``record``, from its targets alone (no mask
    read): what packing plans a conversation's length with. None for a record without geometry
    for the decoder. A mask that vanishes at the decoder's size (``none`` there) is counted as
    its token, the same few tokens."""
    kind, targets = record.get("task"), record.get("targets") or {}
    if kind in MASK_KINDS:
        return SEG_TOKEN if targets.get("mask") or targets.get("mask_rle") else None
    if kind not in (*BOX_KINDS, *SINGLE_KINDS):
        return None
    objects = _instances(targets)
    if not objects:
        return "none"
    if kind in SINGLE_KINDS:
        return SEG_TOKEN
    labels = dict.fromkeys(label for label, _ in objects)
    return " ".join(f"<ref>{label}</ref>{SEG_TOKEN}" if label else SEG_TOKEN for label in labels)


def seg_form(record: dict[str, Any], image_root: Path, input_size: int) -> tuple[str, list[RegionTarget]] | None:
    """The ``<seg>`` answer of ``record`` and one target per token, in the decoder's input pixels;
    None for a record that carries no geometry for the decoder."""
    kind, targets = record.get("task"), record.get("targets") or {}
    is_mask = kind in MASK_KINDS
    if kind not in (*BOX_KINDS, *SINGLE_KINDS) and not is_mask:
        return None
    if is_mask and not (targets.get("mask") or targets.get("mask_rle")):
        return None
    width, height = _image_size(image_root, record)
    sx, sy = input_size / width, input_size / height

    def scaled(geom: tuple[float, ...]) -> tuple[float, float, float, float, float]:
        cx, cy, w, h, a = geom
        if abs(sx - sy) < 1e-9 * max(sx, sy):
            return cx * sx, cy * sy, w * sx, h * sy, a
        from geoassist.format_grammar import obbox_to_corners

        return tuple(corners_to_obbox(obbox_to_corners(cx, cy, w, h, a) * [sx, sy]))  # type: ignore[return-value]

    objects = [(label, scaled(geom)) for label, geom in _instances(targets)]
    if is_mask:
        from geoassist.data_recipes import load_target_mask

        mask = _resized_mask(load_target_mask(record, image_root), input_size)
        if not mask.any():
            return "none", []
        return SEG_TOKEN, [RegionTarget([g for _, g in objects], mask)]
    if not objects:
        return "none", []
    if kind in SINGLE_KINDS:
        return SEG_TOKEN, [RegionTarget([objects[0][1]])]
    groups: dict[str | None, list] = {}
    for label, geom in objects:
        groups.setdefault(label, []).append(geom)
    answer = " ".join(f"<ref>{label}</ref>{SEG_TOKEN}" if label else SEG_TOKEN for label in groups)
    return answer, [RegionTarget(geoms) for geoms in groups.values()]


def with_seg_answer(record: dict[str, Any], answer: str) -> dict[str, Any]:
    """``record`` with its first assistant turn replaced by ``answer``."""
    turns = [dict(t) for t in record["conversations"]]
    for turn in turns:
        if turn["role"] == "assistant":
            turn["content"] = answer
            break
    else:
        turns.append({"role": "assistant", "content": answer})
    return {**record, "conversations": turns}


class RegionConversations(torch.utils.data.Dataset):
    """A stage-2 :class:`~geoassist.train.data.ConversationDataset` whose geometry records are in
    the ``<seg>`` form; each item adds ``regions``, the target maps of its tokens in order."""

    def __init__(self, base, grid: int, input_size: int):
        self.base = base
        self.grid = grid
        self.input_size = input_size
        self.samples = base.samples
        self.images = base.images
        self._forms: dict[int, tuple[str, list[RegionTarget]] | None] = {}

    def __len__(self) -> int:
        return len(self.base)

    def estimated_length(self, index: int) -> int:
        return self.base.estimated_length(index)

    def _form(self, index: int):
        if index not in self._forms:
            sample = self.base.samples[index]
            self._forms[index] = seg_form(sample.record, sample.image_root, self.input_size)
        return self._forms[index]

    def __getitem__(self, index: int) -> dict[str, Any]:
        form = self._form(index)
        if form is None:
            return {**self.base[index], "regions": []}
        sample = self.base.samples[index]
        original = sample.record
        sample.record = with_seg_answer(original, form[0])
        try:
            item = self.base[index]
        finally:
            sample.record = original
        regions = [target_maps(t, self.grid, self.input_size) for t in form[1]]
        return {**item, "regions": regions}


def collate_with_regions(collate):
    """``collate`` (the conversations' collate function) that also carries each row's region
    targets, in the order of the row's ``<seg>`` tokens."""

    def fn(items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate(items)
        batch["regions"] = [list(it.get("regions", [])) for it in items]
        return batch

    return fn


def region_batch_loss(model, batch: dict[str, Any], seg_hidden: torch.Tensor, weights=None):
    """The decoder loss of a batch whose LM pass gave ``seg_hidden`` (its ``<seg>`` states in
    reading order); (loss, terms), or None when no row has a token with a target. A row whose
    tokens were cut by truncation keeps the targets of the tokens it still has. In rows that
    pack several conversations (the batch's ``segment_ids``), a row's targets follow its tokens
    across the conversations, and each token reads the scene of its own conversation's images."""
    from geoassist.model.region_decoder import scene_maps
    from geoassist.model.vlm import conversation_keys
    from geoassist.train.region_loss import region_loss

    ids = batch["input_ids"]
    segments = batch.get("segment_ids")
    keys = conversation_keys(segments if segments is not None else torch.zeros_like(ids))
    is_seg = ids == model.seg_token_id
    seg_keys = keys[is_seg].tolist()  # the order of seg_hidden
    image_keys, image_tokens = torch.unique_consecutive(keys[ids == model.image_token_id], return_counts=True)
    images_per_conversation = (image_tokens // model.config.num_image_tokens).tolist()
    conversation_of = {key: i for i, key in enumerate(image_keys.tolist())}
    tokens, conversations, targets, start = [], [], [], 0
    for n_seg, regions in zip(is_seg.sum(dim=1).tolist(), batch["regions"], strict=True):
        for j in range(min(n_seg, len(regions))):
            conversation = conversation_of.get(seg_keys[start + j])
            if conversation is not None:  # a token without an image has no scene to decode
                tokens.append(start + j)
                conversations.append(conversation)
                targets.append(regions[j])
        start += n_seg
    if not targets:
        return None
    pixels, features = batch.get("pixel_values"), batch.get("vision_features")
    scenes = scene_maps(model, pixels, images_per_conversation, vision_features=features)
    hidden = seg_hidden[torch.tensor(tokens, device=seg_hidden.device)]
    maps = model.region_decoder(scenes[conversations], hidden)
    return region_loss(maps, targets, model.config.preprocess.image_size, weights)
