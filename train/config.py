"""The trainer's typed arguments; a run's YAML file is validated against them.

A YAML file maps one-to-one onto :class:`TrainConfig`: unknown keys are errors
(a typo must not silently fall back to a default), and every value is checked
in ``__post_init__``. Shipped configs live in ``train/configs/*.yaml`` and are
all tested to load.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from geoassist.errors import ConfigError

STAGES = (0, 1, 2)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass
class DataArgs:
    """Recipe outputs to train on. ``train`` entries are folders, optionally ``{path, weight, max_records}``."""

    train: list[Any] = field(default_factory=list)
    eval: str | None = None
    train_split: str | None = "train"
    eval_split: str | None = None
    tasks: list[str] | None = None  # keep only these record tasks (None: all that suit the stage)
    max_length: int = 1024
    group_by_length: bool = True
    num_workers: int = 0
    # Validation for keeping the best checkpoint (see TrainConfig.val_every): folders like
    # ``train``, read at their ``val`` split (real datasets: the committed split's val images).
    val: list[Any] = field(default_factory=list)
    val_limit: int = 64  # validation samples (the first of a fixed seeded choice)

    def __post_init__(self) -> None:
        _check(self.max_length >= 32, "data.max_length must be >= 32")
        _check(self.val_limit >= 1, "data.val_limit must be >= 1")
        _check(self.num_workers >= 0, "data.num_workers must be >= 0")


@dataclass
class OptimArgs:
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 0
    max_steps: int = 100
    batch_size: int = 4
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    scheduler: str = "cosine"  # cosine | linear | constant

    def __post_init__(self) -> None:
        _check(self.lr > 0, "optim.lr must be positive")
        _check(self.max_steps >= 1, "optim.max_steps must be >= 1")
        _check(
            self.batch_size >= 1 and self.grad_accum >= 1,
            "optim.batch_size and grad_accum must be >= 1",
        )
        _check(
            self.scheduler in ("cosine", "linear", "constant"),
            "optim.scheduler is cosine, linear or constant",
        )


DENSE_LOSSES = ("contrastive", "scene", "presence", "count", "semantic", "centre", "box", "change")


@dataclass
class DenseArgs:
    """Stage 0's dense heads (geoassist.model.dense_heads) and the weight of each loss term."""

    feature_path: str = "conv8"  # conv8: a stride-8 conv branch beside the ViT | tokens: the patch tokens
    width: int = 64
    weights: dict[str, float] = field(
        default_factory=lambda: {
            "contrastive": 1.0, "scene": 1.0, "presence": 1.0, "count": 0.5,
            "semantic": 1.0, "centre": 1.0, "box": 0.1, "change": 1.0,
        }
    )

    def __post_init__(self) -> None:
        _check(self.feature_path in ("conv8", "tokens"), "stage0.dense.feature_path is conv8 or tokens")
        _check(self.width >= 8, "stage0.dense.width must be >= 8")
        unknown = sorted(set(self.weights) - set(DENSE_LOSSES))
        _check(not unknown, f"unknown stage0.dense.weights {unknown}; known: {list(DENSE_LOSSES)}")
        _check(all(float(v) >= 0 for v in self.weights.values()), "stage0.dense.weights must be >= 0")
        self.weights = {k: float(self.weights.get(k, 0.0)) for k in DENSE_LOSSES}


@dataclass
class SynthArgs:
    """GeoSynth samples for stage 0, from a reusable shard cache (train/synth_cache.py)."""

    cache_dir: str = "~/.cache/geoassist/synth"
    scenes: int = 2048  # HR scenes (samples start .. start + scenes of the seed sequence)
    pairs: int = 512  # change pairs
    start: int = 0  # first sample number: a continued run takes a new range
    base_seed: int = 0
    size: int = 256  # generated pixels (the tower's input size is the model's)
    views: int = 1  # augmented views of every sample per epoch
    augment: bool = True
    min_zoom: float = 0.7  # the smallest zoom-in crop (scale / GSD jitter)
    workers: int = 2  # generation processes
    shard_size: int = 256  # samples per shard file
    on_mismatch: str = "refuse"  # a cache from another GeoSynth version: refuse | regenerate

    def __post_init__(self) -> None:
        _check(self.scenes >= 0 and self.pairs >= 0 and self.scenes + self.pairs > 0,
               "stage0.synth needs scenes or pairs (>= 1)")
        _check(self.start >= 0 and self.views >= 1 and self.workers >= 1 and self.shard_size >= 1,
               "stage0.synth start >= 0, views >= 1, workers >= 1, shard_size >= 1")
        _check(0.2 <= self.min_zoom <= 1.0, "stage0.synth.min_zoom is in [0.2, 1]")
        _check(self.on_mismatch in ("refuse", "regenerate"), "stage0.synth.on_mismatch is refuse or regenerate")


@dataclass
class Stage0Args:
    """Contrastive image–text training of the vision tower, optionally with dense heads."""

    text_encoder: str = (
        "minilm"  # "minilm" (bundled), a sentence-transformers path/hub id, or "open_clip"
    )
    loss: str = "clip"  # clip | siglip
    init_logit_scale: float = 2.659  # log(1/0.07), CLIP's initial temperature
    dense: DenseArgs | None = None  # dense heads beside the contrastive loss (None: contrastive only)
    synth: SynthArgs | None = None  # GeoSynth shard cache (with dense heads, instead of data.train)
    real: list[dict[str, Any]] = field(default_factory=list)  # {source, path, name?} (train/dense_data.py)
    real_weight: float = 0.2  # about this fraction of the samples are real

    def __post_init__(self) -> None:
        _check(self.loss in ("clip", "siglip"), "stage0.loss is clip or siglip")
        if isinstance(self.dense, dict):
            self.dense = _from_dict(DenseArgs, self.dense, "stage0.dense.")
        if isinstance(self.synth, dict):
            self.synth = _from_dict(SynthArgs, self.synth, "stage0.synth.")
        _check(0.0 <= self.real_weight < 1.0, "stage0.real_weight is in [0, 1)")
        for entry in self.real:
            _check(isinstance(entry, dict) and "source" in entry and "path" in entry,
                   "each stage0.real entry is a mapping with source and path")
        _check(self.dense is not None or (self.synth is None and not self.real),
               "stage0.synth and stage0.real feed the dense heads: set stage0.dense too")


@dataclass
class Stage2Args:
    train_vision_blocks: int = 0  # also train the last N blocks of the vision tower
    qlora: bool = False  # 4-bit base LM through bitsandbytes (GPU only)
    # All records of one image (or pair) as one multi-turn conversation up to data.max_length
    # (train/packing.py); false: one record per sequence.
    packing: bool = False
    # With packing, also put several short conversations in one sequence up to data.max_length;
    # attention stays inside each conversation and positions restart at each (train/packing.py).
    pack_conversations: bool = False
    # A folder of cached vision-tower features (train/feature_cache.py), used while the tower
    # is frozen (train_vision_blocks: 0); null computes the tower in every step.
    feature_cache: str | None = None
    # Settings of a region decoder to add to a model that has none (geoassist.config
    # RegionDecoderConfig, e.g. {"width": 64}); it starts from stage 0's dense heads when the
    # model's folder has them. A model with a decoder trains it whatever this says.
    region_decoder: dict[str, Any] | None = None
    # The region decoder's loss (train/region_loss.py) beside the LM's, on records with geometry.
    region_loss_weight: float = 1.0
    # Steps of the decoder's own phrase-conditioned pretraining before stage 2 (the LM frozen
    # and unsupervised, only the decoder learns; train/region_stage.py); 0 skips it.
    region_pretrain_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.train_vision_blocks >= 0, "stage2.train_vision_blocks must be >= 0")
        _check(self.region_loss_weight >= 0, "stage2.region_loss_weight must be >= 0")
        _check(self.region_pretrain_steps >= 0, "stage2.region_pretrain_steps must be >= 0")
        _check(
            isinstance(self.packing, bool) and isinstance(self.pack_conversations, bool),
            "stage2.packing and stage2.pack_conversations are true or false",
        )
        _check(
            not self.pack_conversations or self.packing,
            "stage2.pack_conversations packs the conversations of stage2.packing: set packing: true too",
        )


@dataclass
class TrainConfig:
    stage: int
    model: str  # preset name, checkpoint folder (e.g. the previous stage's output) or hub id
    out_dir: str
    data: DataArgs = field(default_factory=DataArgs)
    optim: OptimArgs = field(default_factory=OptimArgs)
    stage0: Stage0Args = field(default_factory=Stage0Args)
    stage2: Stage2Args = field(default_factory=Stage2Args)
    seed: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it, else no) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    save_every: int = 50
    # Every this many steps (0: never), the loss on data.val decides the best checkpoint, which
    # the run's final model becomes (train/trainer.py).
    val_every: int = 0
    keep_last: int = 2
    log_every: int = 5
    eval_tasks: list[str] | None = None  # harness tasks to run at the end on data.eval
    eval_limit: int | None = 200
    lora: dict[str, Any] | None = (
        None  # overrides of the model's LoRA config for stage 2 (r, alpha, …)
    )
    card: dict[str, Any] = field(
        default_factory=dict
    )  # free text for the model card (summary, licences)

    def __post_init__(self) -> None:
        for name, cls in _NESTED.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _from_dict(cls, value, f"{name}."))
        _check(self.stage in STAGES, f"stage must be one of {STAGES}")
        dense0 = self.stage == 0 and self.stage0.dense is not None
        _check(
            bool(self.data.train) or dense0,
            "data.train needs at least one recipe output folder (stage 0 with dense heads reads stage0.synth/real)",
        )
        _check(
            not (dense0 and self.data.train),
            "stage 0 with dense heads reads stage0.synth and stage0.real; leave data.train empty",
        )
        _check(not dense0 or self.stage0.synth is not None or bool(self.stage0.real),
               "stage 0 with dense heads needs stage0.synth or stage0.real")
        _check(
            self.mixed_precision in ("auto", "no", "bf16", "fp16"),
            "mixed_precision is auto, no, bf16 or fp16",
        )
        _check(
            self.save_every >= 1 and self.keep_last >= 1, "save_every and keep_last must be >= 1"
        )
        _check(self.val_every >= 0, "val_every must be >= 0")
        _check(
            not self.val_every or (bool(self.data.val) and self.stage in (1, 2)),
            "val_every needs data.val folders and a stage-1 or stage-2 run",
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_NESTED = {"data": DataArgs, "optim": OptimArgs, "stage0": Stage0Args, "stage2": Stage2Args}


def _from_dict(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'the config'} must be a mapping")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(
            f"unknown training option(s) {', '.join(where + u for u in unknown)}; known: {sorted(known)}"
        )
    try:
        return cls(**data)
    except TypeError as exc:
        raise ConfigError(f"invalid {where.rstrip('.') or 'training config'}: {exc}") from exc


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML run config; ``overrides`` (dotted keys → values) win over the file."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the training config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    return config_from_dict(data or {}, overrides)


def config_from_dict(data: dict[str, Any], overrides: dict[str, Any] | None = None) -> TrainConfig:
    data = _deep_copy(data)
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return _from_dict(TrainConfig, data, "")


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def shipped_configs() -> dict[str, Path]:
    """Name → path of the YAML files in ``train/configs``."""
    folder = resources.files("geoassist.train") / "configs"
    return {
        p.name[: -len(".yaml")]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")
    }
