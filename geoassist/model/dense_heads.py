"""Light heads that teach the vision tower what GeoSynth knows exactly (stage 0).

They read the same forward pass as the contrastive loss: the pooled patch tokens
feed the image-level heads (scene class per label space, per-class presence,
per-class count) and a dense feature map feeds the per-cell heads (semantic map,
CenterNet-style object centres with box size and angle, and, for pairs, a change
map from both dates' maps). The dense map is a config choice (``feature_path``):

- ``"tokens"``: the ViT's patch tokens themselves (stride = patch size);
- ``"conv8"``: a light convolutional branch over the pixels at stride 8, with the
  patch tokens upsampled and added, so a patch-32 tower still gets a fine map.

None of this is part of the inference path: the heads (and the fine path) are
saved in their own ``dense_heads.safetensors`` beside a checkpoint, with their
config in the file's metadata, and only stage 0 and the probe load them.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geoassist.errors import CheckpointError, ConfigError
from geoassist.synth.palette import OBJECT_CLASSES, SEMANTIC_CLASSES

FEATURE_PATHS = ("tokens", "conv8")
DENSE_HEADS_FILE = "dense_heads.safetensors"


def _geosynth_scene_classes() -> list[str]:
    from geoassist.synth import scene_classes

    return scene_classes("hr")


@dataclass
class DenseHeadsConfig:
    """The heads' label spaces and the dense feature path; saved in the weights file's metadata."""

    feature_path: str = "conv8"
    width: int = 64
    scene_spaces: dict[str, list[str]] = field(
        default_factory=lambda: {"geosynth": _geosynth_scene_classes()}
    )
    presence_classes: list[str] = field(default_factory=lambda: list(SEMANTIC_CLASSES))
    count_classes: list[str] = field(default_factory=lambda: list(OBJECT_CLASSES))
    semantic_classes: list[str] = field(default_factory=lambda: list(SEMANTIC_CLASSES))
    centre_classes: list[str] = field(default_factory=lambda: list(OBJECT_CLASSES))

    def __post_init__(self) -> None:
        if self.feature_path not in FEATURE_PATHS:
            raise ConfigError(
                f"dense feature path {self.feature_path!r} is unknown; use one of {', '.join(FEATURE_PATHS)}"
            )
        if self.width < 8:
            raise ConfigError("the dense heads' width must be >= 8")
        for name, classes in self.scene_spaces.items():
            if not classes:
                raise ConfigError(f"scene label space {name!r} has no classes")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DenseHeadsConfig:
        return cls(**json.loads(text))


class FineFeatures(nn.Module):
    """The dense feature map the per-cell heads read: (B, width, g, g)."""

    def __init__(self, tower_width: int, width: int, path: str):
        super().__init__()
        self.path = path
        self.token_proj = nn.Conv2d(tower_width, width, kernel_size=1)
        if path == "conv8":
            half = max(8, width // 2)
            self.branch = nn.Sequential(
                nn.Conv2d(3, half, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(half, width, 3, stride=2, padding=1),
                nn.GELU(),
                nn.Conv2d(width, width, 3, stride=2, padding=1),
            )
        else:
            self.branch = None
        self.norm = nn.GroupNorm(1, width)

    def forward(self, pixels_rgb: torch.Tensor, token_grid: torch.Tensor) -> torch.Tensor:
        tokens = self.token_proj(token_grid)
        if self.branch is None:
            return F.gelu(self.norm(tokens))
        fine = self.branch(pixels_rgb.to(tokens.dtype))
        tokens = F.interpolate(tokens, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return F.gelu(self.norm(fine + tokens))


class DenseHeads(nn.Module):
    """Image-level and per-cell heads over one tower pass (see the module docstring)."""

    def __init__(self, config: DenseHeadsConfig, tower_width: int):
        super().__init__()
        self.config = config
        self.tower_width = tower_width
        self.pool_norm = nn.LayerNorm(tower_width)
        self.scene = nn.ModuleDict(
            {name: nn.Linear(tower_width, len(classes)) for name, classes in config.scene_spaces.items()}
        )
        self.presence = nn.Linear(tower_width, len(config.presence_classes))
        self.count = nn.Linear(tower_width, len(config.count_classes))
        self.fine = FineFeatures(tower_width, config.width, config.feature_path)
        w = config.width
        self.semantic = nn.Conv2d(w, len(config.semantic_classes), kernel_size=1)
        self.centre = nn.Conv2d(w, len(config.centre_classes), kernel_size=1)
        self.box_size = nn.Conv2d(w, 2, kernel_size=1)  # log(w, h) of the box, in cells
        self.box_angle = nn.Conv2d(w, 2, kernel_size=1)  # (sin 2θ, cos 2θ): a box is the same at θ and θ+180°
        self.change = nn.Sequential(
            nn.Conv2d(3 * w, w, kernel_size=3, padding=1), nn.GELU(), nn.Conv2d(w, 1, kernel_size=1)
        )
        with torch.no_grad():  # CenterNet's prior: few cells hold a centre
            self.centre.bias.fill_(-math.log((1 - 0.01) / 0.01))

    def forward(
        self, tokens: torch.Tensor, grid: tuple[int, int], pixels_rgb: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """``tokens`` (B, N, tower_width) of a ``grid`` of patches; ``pixels_rgb`` the tower's 3-channel input."""
        pooled = self.pool_norm(tokens.mean(dim=1))
        token_grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
        dense = self.fine(pixels_rgb, token_grid)
        out = {
            "pooled": pooled,
            "dense": dense,
            "presence": self.presence(pooled),
            "count": self.count(pooled),
            "semantic": self.semantic(dense),
            "centre": self.centre(dense),
            "box_size": self.box_size(dense),
            "box_angle": self.box_angle(dense),
        }
        for name, head in self.scene.items():
            out[f"scene:{name}"] = head(pooled)
        return out

    def change_logits(self, dense_a: torch.Tensor, dense_b: torch.Tensor) -> torch.Tensor:
        """(B, 1, g, g) change logits from both dates' dense maps (the same weights read both)."""
        return self.change(torch.cat([dense_a, dense_b, (dense_a - dense_b).abs()], dim=1))

    @property
    def stride_cells(self) -> int | None:
        """Pixels per dense cell for the conv branch (None: the tower's patch size)."""
        return 8 if self.config.feature_path == "conv8" else None


def save_dense_heads(heads: DenseHeads, folder: str | Path) -> Path:
    """Write ``folder/dense_heads.safetensors`` atomically, the config in its metadata."""
    from safetensors.torch import save_file

    folder = Path(folder)
    path = folder / DENSE_HEADS_FILE
    tmp = path.with_name(path.name + ".tmp")
    state = {k: v.detach().cpu().contiguous() for k, v in heads.state_dict().items()}
    meta = {"config": heads.config.to_json(), "tower_width": str(heads.tower_width)}
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def has_dense_heads(folder: str | Path) -> bool:
    return (Path(folder) / DENSE_HEADS_FILE).is_file()


def load_dense_heads(folder: str | Path) -> DenseHeads:
    """The heads saved beside a checkpoint; :class:`CheckpointError` when absent or unreadable."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(folder) / DENSE_HEADS_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{Path(folder)} has no {DENSE_HEADS_FILE}; it was not trained with stage 0's dense heads "
            "(train it with `stage0.dense` set, or start the heads from scratch)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = DenseHeadsConfig.from_json(meta["config"])
        heads = DenseHeads(config, int(meta["tower_width"]))
        heads.load_state_dict(load_file(str(path)), strict=True)
    except Exception as exc:  # safetensors and a config that no longer validates raise several types
        raise CheckpointError(f"cannot read {path} ({exc}); re-run stage 0 or delete the file") from exc
    return heads
