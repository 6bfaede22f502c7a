"""Stage 2 with a region decoder: adding one to a model, its dataset, and the decoder's own
phrase-conditioned pretraining (the LM frozen and not supervised).

:func:`pretrain_region_decoder` is the optional first step: each record with geometry is
rendered as its question and its ``<seg>`` answer, the frozen LM runs once without gradients
to give the hidden state at each token, and only the decoder (and its ``<seg>`` rows) learns
from the decoder losses. Stage 2 then trains everything together (``stage_loss``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from geoassist.config import RegionDecoderConfig

logger = logging.getLogger(__name__)


def add_region_decoder(model, settings: dict[str, Any] | RegionDecoderConfig, folder: Path | None = None) -> list[str]:
    """Give ``model`` a new region decoder (and its ``<seg>`` token), warm-started from stage 0's
    dense heads saved in ``folder`` when their design matches; returns the parts warm-started."""
    from geoassist.model.dense_heads import has_dense_heads, load_dense_heads
    from geoassist.model.region_decoder import warm_start_from_dense_heads

    config = settings if isinstance(settings, RegionDecoderConfig) else RegionDecoderConfig(**settings)
    model.config.region_decoder = config
    model._add_region_decoder(model.lm.get_input_embeddings().embedding_dim)
    model.region_decoder.to(model.device)
    copied: list[str] = []
    if folder is not None and folder.is_dir() and has_dense_heads(folder):
        copied = warm_start_from_dense_heads(model.region_decoder, load_dense_heads(folder))
    logger.info(
        "region decoder added (%d parameters); warm-started from the dense heads: %s",
        sum(p.numel() for p in model.region_decoder.parameters()),
        ", ".join(copied) or "nothing",
    )
    return copied


def decoder_grid(model) -> int:
    stride = model.region_decoder.stride or model.vision.patch_size
    return model.config.preprocess.image_size // stride


def region_dataset(dataset, model):
    """``dataset`` (stage-2 conversations) with its geometry records in the ``<seg>`` form."""
    from geoassist.train.region_data import RegionConversations

    return RegionConversations(dataset, decoder_grid(model), model.config.preprocess.image_size)


def pretrain_region_decoder(
    model, dataset, *, steps: int, batch_size: int = 4, lr: float = 1e-3, seed: int = 0
) -> list[float]:
    """Train only the region decoder on ``dataset`` (a :func:`region_dataset`) for ``steps`` steps
    of ``batch_size`` samples that carry regions; returns the decoder loss of each step. Which
    parameters train is restored afterwards."""
    from geoassist.train.data import collate_conversations
    from geoassist.train.region_data import collate_with_regions

    if hasattr(dataset, "unpacked"):  # packed conversations: the decoder pretrains on single records
        dataset = region_dataset(dataset.unpacked(), model)
    indices = [i for i in range(len(dataset)) if dataset._form(i) is not None and dataset._form(i)[1]]
    if not indices:
        from geoassist.errors import ConfigError

        raise ConfigError("no record of this data carries geometry for the region decoder")
    collate = collate_with_regions(collate_conversations(model.pad_token_id))
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    model.requires_grad_(False)
    model.region_decoder.requires_grad_(True)
    try:
        return _pretrain_steps(model, dataset, indices, collate, steps, batch_size, lr, seed)
    finally:  # the stage's own choice of trainable parameters comes back
        for name, p in model.named_parameters():
            p.requires_grad = trainable[name]


def _pretrain_steps(model, dataset, indices, collate, steps, batch_size, lr, seed) -> list[float]:
    from geoassist.train.region_data import region_batch_loss

    optimizer = torch.optim.AdamW(model.region_decoder.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    for _ in range(steps):
        pick = torch.randint(len(indices), (batch_size,), generator=generator).tolist()
        batch = collate([dataset[indices[i]] for i in pick])
        with torch.no_grad():
            out = model(
                batch["input_ids"], batch["pixel_values"], batch["attention_mask"],
                batch["labels"], return_logits=False,
            )  # fmt: skip
        result = region_batch_loss(model, batch, out.seg_hidden)
        if result is None:
            continue
        loss, _ = result
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses

