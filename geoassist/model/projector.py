"""Projectors from vision features to LM embeddings, and the temporal embedding of image sequences."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from geoassist.config import ProjectorConfig
from geoassist.errors import ConfigError


def build_projector(kind: str, vision_dim: int, lm_dim: int) -> nn.Module:
    """``linear``, ``mlp2x_gelu`` (LLaVA-1.5's two-layer MLP) or ``identity`` (dims must match)."""
    if kind == "linear":
        return nn.Linear(vision_dim, lm_dim)
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(vision_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, lm_dim))
    if kind == "identity":
        if vision_dim != lm_dim:
            raise ConfigError(
                f"projector 'identity' needs equal widths, got vision {vision_dim} and LM {lm_dim}; "
                "use 'linear' or 'mlp2x_gelu'"
            )
        return nn.Identity()
    raise ConfigError(f"unknown projector type {kind!r}")


class VisualProjector(nn.Module):
    """Pools the patch grid (optional), projects to the LM width and adds the temporal embedding."""

    def __init__(self, config: ProjectorConfig, vision_dim: int, lm_dim: int, has_cls_token: bool):
        super().__init__()
        self.config = config
        self.has_cls_token = has_cls_token
        self.proj = build_projector(config.type, vision_dim, lm_dim)
        # Zero-initialised so that single-image behaviour is unchanged until training uses it.
        self.temporal = nn.Embedding(config.max_images, lm_dim)
        nn.init.zeros_(self.temporal.weight)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        k = self.config.token_pool
        if k == 1:
            return tokens
        cls, patches = (tokens[:, :1], tokens[:, 1:]) if self.has_cls_token else (None, tokens)
        b, n, d = patches.shape
        side = int(n**0.5)
        grid = patches.transpose(1, 2).reshape(b, d, side, side)
        patches = F.avg_pool2d(grid, k).flatten(2).transpose(1, 2)
        return patches if cls is None else torch.cat([cls, patches], dim=1)

    def forward(self, tokens: torch.Tensor, temporal_index: torch.Tensor) -> torch.Tensor:
        """tokens (num_images, N, vision_dim), temporal_index (num_images,) → (num_images, N', lm_dim)."""
        x = self.proj(self.pool(tokens))
        return x + self.temporal(temporal_index).unsqueeze(1).to(x.dtype)
