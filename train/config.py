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

    def __post_init__(self) -> None:
        _check(bool(self.train), "data.train needs at least one recipe output folder")
        _check(self.max_length >= 32, "data.max_length must be >= 32")
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


@dataclass
class Stage0Args:
    """Contrastive image–text training of the vision tower."""

    text_encoder: str = (
        "minilm"  # "minilm" (bundled), a sentence-transformers path/hub id, or "open_clip"
    )
    loss: str = "clip"  # clip | siglip
    init_logit_scale: float = 2.659  # log(1/0.07), CLIP's initial temperature

    def __post_init__(self) -> None:
        _check(self.loss in ("clip", "siglip"), "stage0.loss is clip or siglip")


@dataclass
class Stage2Args:
    train_vision_blocks: int = 0  # also train the last N blocks of the vision tower
    qlora: bool = False  # 4-bit base LM through bitsandbytes (GPU only)

    def __post_init__(self) -> None:
        _check(self.train_vision_blocks >= 0, "stage2.train_vision_blocks must be >= 0")


@dataclass
class TrainConfig:
    stage: int
    model: str  # preset name, checkpoint folder (e.g. the previous stage's output) or hub id
    out_dir: str
    data: DataArgs
    optim: OptimArgs = field(default_factory=OptimArgs)
    stage0: Stage0Args = field(default_factory=Stage0Args)
    stage2: Stage2Args = field(default_factory=Stage2Args)
    seed: int = 0
    mixed_precision: str = "auto"  # auto (bf16 on a GPU that has it, else no) | no | bf16 | fp16
    gradient_checkpointing: bool = False
    save_every: int = 50
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
        _check(
            self.mixed_precision in ("auto", "no", "bf16", "fp16"),
            "mixed_precision is auto, no, bf16 or fp16",
        )
        _check(
            self.save_every >= 1 and self.keep_last >= 1, "save_every and keep_last must be >= 1"
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
