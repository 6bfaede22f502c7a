"""The vision tower: a standard open_clip ViT that returns patch tokens from a chosen block.

The tower *is* an ``open_clip`` ``VisionTransformer`` (built by open_clip from
the config), so its weights stay in open_clip's layout — ``visual.*`` keys — and
remain convertible to a transformers CLIP vision model. Only the forward pass
is ours: it stops at ``feature_layer`` and interpolates the position embedding
when the input size differs from the size the tower was built for.

For multispectral input (``VisionConfig.in_bands != 3``) a :class:`BandAdapter`
— a learned 1×1 convolution from the input bands to 3 channels — runs before
the tower's patch embedding. It lives beside the tower (``band_adapter.*``,
saved in its own file), so the tower itself stays a plain open_clip ViT.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from geoassist.config import VisionConfig
from geoassist.errors import (
    BandMismatchError,
    CheckpointError,
    ModelNotFoundError,
    UnsafeCheckpointError,
)

OPEN_CLIP_PREFIX = "visual."


class BandAdapter(nn.Module):
    """A per-pixel linear map from ``in_bands`` standardised bands to the tower's 3 channels.

    Initialised to pass ``init_rgb`` (three input band positions) straight to R, G, B, so a
    tower pretrained on RGB starts from a true-colour view; without ``init_rgb`` every
    channel starts as the mean of all bands.
    """

    def __init__(self, in_bands: int, init_rgb: list[int] | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_bands, 3, kernel_size=1)
        with torch.no_grad():
            self.conv.bias.zero_()
            if init_rgb is None:
                self.conv.weight.fill_(1.0 / in_bands)
            else:
                self.conv.weight.zero_()
                for channel, band in enumerate(init_rgb):
                    self.conv.weight[channel, band, 0, 0] = 1.0

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.conv(pixel_values)


class VisionTower(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        self.config = config.resolved()
        cfg = CLIPVisionCfg(**config.open_clip_vision_cfg())
        self.visual = _build_vision_tower(
            self.config.embed_dim, cfg, quick_gelu=self.config.quick_gelu
        )
        self.band_adapter = (
            BandAdapter(config.in_bands, config.band_adapter_init) if config.in_bands != 3 else None
        )
        n_blocks = len(self.visual.transformer.resblocks)
        self.num_blocks_used = self.config.feature_layer % n_blocks + 1
        self.grad_checkpointing = False
        if config.weights:
            load_open_clip_weights(self, config.weights)

    @property
    def width(self) -> int:
        return self.visual.conv1.out_channels

    @property
    def patch_size(self) -> int:
        return self.visual.conv1.kernel_size[0]

    def _position_embedding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.visual.positional_embedding
        cls_pos, patch_pos = pos[:1], pos[1:]
        n = patch_pos.shape[0]
        side = int(math.isqrt(n))
        if side * side == n and (grid_h, grid_w) == (side, side):
            return pos
        # Bicubic resampling of the learned grid lets the tower read other input sizes.
        grid = patch_pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(
            grid.float(), size=(grid_h, grid_w), mode="bicubic", align_corners=False
        )
        patch_pos = grid.permute(0, 2, 3, 1).reshape(grid_h * grid_w, -1).to(pos.dtype)
        return torch.cat([cls_pos, patch_pos], dim=0)

    def adapt(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, in_bands, H, W) → (B, 3, H, W) through the band adapter (unchanged for RGB towers)."""
        expected = self.config.in_bands
        if pixel_values.shape[1] != expected:
            raise BandMismatchError(
                f"the vision tower takes {expected} band(s), got pixel values with "
                f"{pixel_values.shape[1]}; preprocess images with this model's preprocess config"
            )
        if self.band_adapter is None:
            return pixel_values
        weight = self.band_adapter.conv.weight
        return self.band_adapter(pixel_values.to(weight.dtype))

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, in_bands, H, W) → (B, N, width) tokens of block ``feature_layer`` (patch tokens, + CLS if configured)."""
        visual = self.visual
        x = visual.conv1(self.adapt(pixel_values).to(visual.conv1.weight.dtype))
        grid_h, grid_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._position_embedding(grid_h, grid_w).to(x.dtype)
        x = visual.patch_dropout(x)
        x = visual.ln_pre(x)
        blocks = visual.transformer.resblocks[: self.num_blocks_used]
        batch_first = getattr(visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        for block in blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if not batch_first:
            x = x.transpose(0, 1)
        return x if self.config.use_cls_token else x[:, 1:]

    def forward_features(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """One pass for stage 0: patch tokens of block ``feature_layer`` (B, N, width), the pooled
        projected embedding that :meth:`encode_image` returns, and the patch grid (rows, cols).

        The dense heads and the contrastive loss read the same forward pass; the tokens are
        those the LM's projector reads (the class token is dropped).
        """
        visual = self.visual
        x = visual.conv1(self.adapt(pixel_values).to(visual.conv1.weight.dtype))
        grid = (int(x.shape[-2]), int(x.shape[-1]))
        x = x.flatten(2).transpose(1, 2)
        cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self._position_embedding(*grid).to(x.dtype)
        x = visual.patch_dropout(x)
        x = visual.ln_pre(x)
        batch_first = getattr(visual.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)
        tokens = x
        for index, block in enumerate(visual.transformer.resblocks):
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
            if index == self.num_blocks_used - 1:
                tokens = x
        if not batch_first:
            x, tokens = x.transpose(0, 1), tokens.transpose(0, 1)
        pooled, _ = visual._pool(x)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return tokens[:, 1:], pooled, grid

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """open_clip's pooled, projected image embedding (for contrastive training and retrieval)."""
        return self.visual(self.adapt(pixel_values))

    def open_clip_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under open_clip's key names (``visual.*``), ready for a CLIP checkpoint."""
        return {OPEN_CLIP_PREFIX + k: v for k, v in self.visual.state_dict().items()}


def load_open_clip_weights(tower: VisionTower, path: str | Path) -> None:
    """Load ``visual.*`` weights from an open_clip checkpoint saved as safetensors."""
    from safetensors.torch import load_file

    path = Path(path).expanduser()
    if not path.exists():
        raise ModelNotFoundError(f"vision weights not found: {path}")
    if path.suffix != ".safetensors":
        raise UnsafeCheckpointError(
            f"{path} is not a .safetensors file; GeoAssist never unpickles weights. Convert it once with "
            f"`python -m geoassist.model.vision {path} {path.with_suffix('.safetensors')}`"
        )
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for corrupt files
        raise CheckpointError(f"cannot read vision weights {path}: {exc}") from exc
    visual = {
        k[len(OPEN_CLIP_PREFIX) :]: v for k, v in state.items() if k.startswith(OPEN_CLIP_PREFIX)
    }
    if not visual:
        raise CheckpointError(f"{path} has no open_clip 'visual.*' weights")
    result = tower.visual.load_state_dict(visual, strict=False)
    if result.missing_keys:
        raise CheckpointError(
            f"vision weights in {path} do not match the configured tower; missing {result.missing_keys[:5]}…"
        )


def convert_checkpoint_to_safetensors(src: str | Path, dst: str | Path) -> Path:
    """Convert an open_clip ``.pt``/``.bin`` checkpoint (e.g. RemoteCLIP, GeoRSCLIP) to safetensors.

    This is an explicit, one-off step the user runs on a file they trust. It uses
    ``torch.load(weights_only=True)``, which restores tensors only and refuses to
    run code from the pickle.
    """
    from safetensors.torch import save_file

    checkpoint = torch.load(str(src), map_location="cpu", weights_only=True)
    if isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    state = {
        k.removeprefix("module."): v.contiguous()
        for k, v in checkpoint.items()
        if torch.is_tensor(v)
    }
    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(dst)
    return dst


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 3:
        print("usage: python -m geoassist.model.vision SRC.pt DST.safetensors", file=sys.stderr)
        sys.exit(2)
    print(convert_checkpoint_to_safetensors(sys.argv[1], sys.argv[2]))
