"""The region decoder: geometry from the LM's ``<seg>`` token, not from digits (LISA / GeoPixel style).

The LM writes one ``<seg>`` per thing it refers to ("the ship nearest the pier": one
instance; "ships": all of them, from the same token). The final hidden state at that token,
projected, conditions a light decoder over a fine feature map of the image — a stride-8
convolutional branch with the vision tower's unpooled patch tokens upsampled onto it (or the
tokens alone) — so objects of ~10 px at 256 px fall in cells of their own. Per query it
predicts, CenterNet-style, a centre heatmap (the instances' scores), box sizes, angles and a
centre offset, and a mask; :mod:`geoassist.model.region_geometry` turns those maps into
scored boxes, oriented boxes, polygons and a mask. For a pair or series the map it reads
fuses the first and the last image (``pair_fuse``), so the mask of a change query is the
change mask.

The query reaches the maps twice: FiLM (a scale and shift of every channel) before a 3×3
convolution, and a direct dot product of a query vector with the map for the centre and mask
logits — so the decoder listens to the LM from the first step.

``<seg>`` is a token added to the tokenizer; its input embedding (``seg_embed``) and its
output row (``seg_head``, ``seg_bias``) live here, not in the LM's tables: the LM's weights,
its vocabulary size and the LLaVA export stay as they are, a LoRA adapter-only checkpoint still
carries them, and a model without a decoder never sees the token. The weights are saved in
``region_decoder.safetensors`` beside the checkpoint. Stage 0's dense heads warm-start the
fine path, the box size and angle heads, the centre head and the pair fusion
(:func:`warm_start_from_dense_heads`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from geoassist.config import RegionDecoderConfig
from geoassist.errors import CheckpointError, GeoAssistError
from geoassist.model.dense_heads import FineFeatures

SEG_TOKEN = "<seg>"
REGION_DECODER_FILE = "region_decoder.safetensors"


class RegionDecoderError(GeoAssistError):
    """The region decoder cannot run on what it was given (no image, too many ``<seg>`` tokens…)."""


class RegionDecoder(nn.Module):
    """Maps of one query per ``<seg>`` hidden state over the fine feature map of its image(s)."""

    def __init__(self, config: RegionDecoderConfig, tower_width: int, lm_dim: int):
        super().__init__()
        self.config = config
        self.tower_width = tower_width
        self.lm_dim = lm_dim
        w = config.width
        # The <seg> token's own rows (see the module docstring).
        self.seg_embed = nn.Parameter(torch.randn(lm_dim) * 0.02)
        self.seg_head = nn.Parameter(torch.randn(lm_dim) * 0.02)
        self.seg_bias = nn.Parameter(torch.zeros(()))
        self.fine = FineFeatures(tower_width, w, config.feature_path)
        self.pair_fuse = nn.Conv2d(3 * w, w, kernel_size=3, padding=1)
        self.query = nn.Sequential(nn.Linear(lm_dim, lm_dim), nn.GELU(), nn.Linear(lm_dim, w))
        self.film = nn.Linear(w, 2 * w)
        self.mix = nn.Conv2d(w, w, kernel_size=3, padding=1)
        self.centre_query = nn.Linear(w, w)
        self.mask_query = nn.Linear(w, w)
        self.centre = nn.Conv2d(w, 1, kernel_size=1)
        self.offset = nn.Conv2d(w, 2, kernel_size=1)
        self.box_size = nn.Conv2d(w, 2, kernel_size=1)
        self.box_angle = nn.Conv2d(w, 2, kernel_size=1)
        self.mask = nn.Conv2d(w, 1, kernel_size=1)
        with torch.no_grad():
            self.centre.bias.fill_(-math.log((1 - 0.01) / 0.01))  # few cells hold a centre
            self.film.weight.mul_(0.1)
            self.film.bias.zero_()

    @property
    def stride(self) -> int | None:
        """Pixels per cell of the fine map (None: the tower's patch size)."""
        return 8 if self.config.feature_path == "conv8" else None

    # ------------------------------------------------------------------- maps
    def image_maps(self, pixels_rgb: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """(n, 3, S, S) tower input and (n, N, tower_width) patch tokens → (n, width, g, g)."""
        side = int(math.isqrt(tokens.shape[1]))
        if side * side != tokens.shape[1]:
            tokens = tokens[:, 1:]  # a class token leads the patch tokens
            side = int(math.isqrt(tokens.shape[1]))
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], side, side)
        dtype = self.fine.token_proj.weight.dtype
        return self.fine(pixels_rgb.to(dtype), grid.to(dtype))

    def scene_map(self, maps: torch.Tensor) -> torch.Tensor:
        """The map of one conversation's images (n, width, g, g) → (width, g, g): the image
        itself, or for a pair or series the first and last fused (what changed between them)."""
        if maps.shape[0] == 1:
            return maps[0]
        first, last = maps[0], maps[-1]
        fused = self.pair_fuse(torch.cat([first, last, (first - last).abs()], dim=0)[None])[0]
        return F.gelu(fused)

    def forward(self, scene: torch.Tensor, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        """``scene`` (Q, width, g, g): each query's scene map; ``hidden`` (Q, lm_dim): the LM's final
        hidden state at each ``<seg>`` token → maps (Q, channels, g, g) of every head."""
        dtype = self.film.weight.dtype
        q = self.query(hidden.to(dtype))
        scale, shift = self.film(q).chunk(2, dim=-1)
        conditioned = scene * (1 + scale[..., None, None]) + shift[..., None, None]
        x = scene + F.gelu(self.mix(conditioned))
        w = x.shape[1]

        def attend(proj: nn.Linear) -> torch.Tensor:
            return torch.einsum("qc,qchw->qhw", proj(q), x)[:, None] / math.sqrt(w)

        return {
            "centre": self.centre(x) + attend(self.centre_query),
            "offset": self.offset(x),
            "box_size": self.box_size(x),
            "box_angle": self.box_angle(x),
            "mask": self.mask(x) + attend(self.mask_query),
        }

    def seg_logit(self, hidden: torch.Tensor) -> torch.Tensor:
        """The ``<seg>`` logit of LM hidden states (..., lm_dim) → (..., 1)."""
        return (hidden @ self.seg_head.to(hidden.dtype) + self.seg_bias.to(hidden.dtype))[..., None]


def warm_start_from_dense_heads(decoder: RegionDecoder, heads) -> list[str]:
    """Copy what stage 0's :class:`~geoassist.model.dense_heads.DenseHeads` learned into ``decoder``
    where the shapes agree: the fine path, box size and angle, the class-mean centre head and the
    change head's first convolution as the pair fusion. Returns the parts copied."""
    copied = []
    same_path = (
        heads.config.feature_path == decoder.config.feature_path
        and heads.config.width == decoder.config.width
        and heads.tower_width == decoder.tower_width
    )
    if not same_path:
        return copied
    with torch.no_grad():
        decoder.fine.load_state_dict(heads.fine.state_dict())
        copied.append("fine")
        for name in ("box_size", "box_angle"):
            getattr(decoder, name).load_state_dict(getattr(heads, name).state_dict())
            copied.append(name)
        decoder.centre.weight.copy_(heads.centre.weight.mean(dim=0, keepdim=True))
        decoder.centre.bias.copy_(heads.centre.bias.mean().reshape(1))
        copied.append("centre")
        decoder.pair_fuse.load_state_dict(heads.change[0].state_dict())
        copied.append("pair_fuse")
    return copied


# -------------------------------------------------------------------- files


def save_region_decoder(decoder: RegionDecoder, folder: str | Path, dtype: torch.dtype | None = None) -> Path:
    """Write ``folder/region_decoder.safetensors`` (the config is in the checkpoint's config.json)."""
    from safetensors.torch import save_file

    path = Path(folder) / REGION_DECODER_FILE
    tmp = path.with_name(path.name + ".tmp")

    def prepare(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        return (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()

    save_file({k: prepare(v) for k, v in decoder.state_dict().items()}, str(tmp))
    tmp.replace(path)
    return path


def load_region_decoder_weights(decoder: RegionDecoder | None, folder: str | Path) -> None:
    """Load ``folder/region_decoder.safetensors`` into ``decoder``.

    A checkpoint whose config names a decoder but lacks the file, a file the config does not
    describe, and weights of another shape are each one :class:`CheckpointError`.
    """
    folder = Path(folder)
    path = folder / REGION_DECODER_FILE
    if decoder is None:
        if path.is_file():
            raise CheckpointError(
                f"{path} holds a region decoder but {folder / 'config.json'} has no region_decoder "
                "section, so this model has nowhere to load it; restore the section (save the "
                "model again) or delete the file to use the model without its decoder"
            )
        return
    if not path.is_file():
        raise CheckpointError(
            f"{folder / 'config.json'} names a region decoder but {path} is missing; the "
            "checkpoint is incomplete: copy it again or save the model again"
        )
    from geoassist.checkpoint import _read_safetensors

    try:
        decoder.load_state_dict(_read_safetensors(path), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the weights in {path} do not match the region_decoder section of "
            f"{folder / 'config.json'} ({str(exc)[:300]}); save the model again"
        ) from exc


# ------------------------------------------------------------- with a model


def remembered_tower_output(model, pixel_values: torch.Tensor | None) -> torch.Tensor | None:
    """The tower's output for ``pixel_values`` kept by the generation that ran the tower on this
    very tensor (matched by identity, so another request's images never use it); None when the
    model's last tower pass was on other images."""
    memo = getattr(model, "_tower_memo", None)
    if pixel_values is None or memo is None or memo[0] is not pixel_values:
        return None
    return memo[1]


def scene_maps(
    model,
    pixel_values: torch.Tensor | None,
    images_per_row: list[int],
    *,
    vision_features: torch.Tensor | None = None,
) -> torch.Tensor:
    """The decoder's scene map of each row (conversation) of a batch: (rows, width, g, g).

    ``pixel_values`` holds every row's images in order (``images_per_row`` of them each);
    ``vision_features`` may give the tower's output instead, when the fine path reads only the
    tokens. A row without an image is a :class:`RegionDecoderError`.
    """
    decoder = model.region_decoder
    if decoder is None:
        raise RegionDecoderError("this model has no region decoder (its config has no region_decoder)")
    if any(n < 1 for n in images_per_row):
        raise RegionDecoderError(
            "a <seg> token needs an image to decode a region from; ask about an image"
        )
    if pixel_values is None and (vision_features is None or decoder.config.feature_path == "conv8"):
        raise RegionDecoderError(
            "the region decoder's conv8 path reads the pixels; give pixel_values (turn "
            "stage2.feature_cache off, or use region_decoder.feature_path 'tokens')"
        )
    if vision_features is None:
        vision_features = remembered_tower_output(model, pixel_values)
    tokens = vision_features if vision_features is not None else model.vision(pixel_values)
    if pixel_values is not None:
        rgb = model.vision.adapt(pixel_values)
    else:
        side = model.config.preprocess.image_size
        rgb = tokens.new_zeros((tokens.shape[0], 3, side, side))
    maps = decoder.image_maps(rgb, tokens)
    rows, start = [], 0
    for n in images_per_row:
        rows.append(decoder.scene_map(maps[start : start + n]))
        start += n
    return torch.stack(rows)


def decode_regions(
    model,
    pixel_values: torch.Tensor | None,
    hidden: torch.Tensor,
    *,
    vision_features: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The maps of ``hidden`` (Q, lm_dim) — the ``<seg>`` states of one conversation — over its
    images ``pixel_values`` (n, C, S, S). ``vision_features`` (n, tokens, width), the tower's
    output for those images from the generation that wrote the tokens, spares the tower a
    second pass. More than ``max_seg_tokens`` queries, or none with no image, is a
    :class:`RegionDecoderError`."""
    decoder = model.region_decoder
    if decoder is None:
        raise RegionDecoderError("this model has no region decoder (its config has no region_decoder)")
    limit = decoder.config.max_seg_tokens
    if hidden.shape[0] > limit:
        raise RegionDecoderError(
            f"{hidden.shape[0]} <seg> tokens to decode but the decoder takes at most {limit} per "
            "answer (region_decoder.max_seg_tokens); ask for fewer things at once"
        )
    images = pixel_values if pixel_values is not None else vision_features
    n_images = 0 if images is None else int(images.shape[0])
    if vision_features is not None and int(vision_features.shape[0]) != n_images:
        raise RegionDecoderError(
            f"{int(vision_features.shape[0])} images' tower output for {n_images} images; give "
            "the features of exactly the images the tokens are about"
        )
    scene = scene_maps(model, pixel_values, [n_images], vision_features=vision_features)
    return decoder(scene.expand(hidden.shape[0], -1, -1, -1), hidden)
