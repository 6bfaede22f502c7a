"""One checkpoint folder for the whole assistant, and the factory that resolves a model name.

Layout (safetensors only; nothing is ever unpickled)::

    config.json              ModelConfig (vision, projector, LM, LoRA, preprocessing)
    preprocess.json          bands, mean/std, size — what a caller needs to feed images
    vision.safetensors       the open_clip vision tower, keys ``visual.*`` (open_clip's layout)
    band_adapter.safetensors the learned band adapter, only when vision.in_bands != 3
    projector.safetensors    projector + temporal embedding
    region_decoder.safetensors  the region decoder and its <seg> rows, only when config.json
                             has a region_decoder section (geoassist.model.region_decoder)
    lm/                      the full LM (transformers folder) — for random or merged LMs
    lm_adapter/              or: a peft LoRA adapter over the base LM named in config.json
    tokenizer/               tokenizer files, with the chat template
    README.md                the model card (training data, measured scores)
    geoassist.json           format version, what the LM part holds, library version

A save goes to a temporary sibling folder that replaces the target in one
rename, so a crash mid-save leaves the previous checkpoint readable; the next save
removes the temporary folder of one that was killed (:mod:`geoassist.atomic`).
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from geoassist import __version__
from geoassist.atomic import make_temp_dir, replace_folder
from geoassist.config import ModelConfig, list_presets, load_preset
from geoassist.errors import CheckpointError, ModelNotFoundError, UnsafeCheckpointError

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")

# Trained models the project publishes: name → where the weights come from.
# A folder name is relative to the installed package's `weights/` directory.
PRETRAINED: dict[str, dict[str, str]] = {
    "geoassist-mini": {
        "folder": "geoassist-mini",
        "description": "SmolLM2-135M-Instruct + small RS ViT trained by `geoassist train --preset geoassist-mini`",
    },
}


def weights_dir() -> Path:
    return Path(__file__).resolve().parent / "weights"


def _write_safetensors(
    state: dict[str, torch.Tensor], path: Path, dtype: torch.dtype | None = None
) -> None:
    from safetensors.torch import save_file

    def prepare(v: torch.Tensor) -> torch.Tensor:
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        return v.contiguous()

    save_file({k: prepare(v) for k, v in state.items()}, str(path))


def _corrupt(path: Path, exc: BaseException) -> CheckpointError:
    return CheckpointError(
        f"{path} is truncated or corrupt ({exc}); the checkpoint is damaged: copy or download "
        "it again, or save the model again"
    )


def check_safetensors(path: Path) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a complete safetensors file.

    Reads only the header, which names every tensor's byte range: a file cut short (an
    interrupted copy or download) fails here, before any loader sees it.
    """
    from safetensors import safe_open

    if not path.is_file():
        raise CheckpointError(f"checkpoint file missing: {path}; the checkpoint is incomplete")
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except Exception as exc:  # safetensors raises its own error type, OSError, ValueError...
        raise _corrupt(path, exc) from exc


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    check_safetensors(path)
    try:
        return load_file(str(path))
    except Exception as exc:  # corrupt headers surface as several exception types
        raise _corrupt(path, exc) from exc


def _check_lm_part(folder: Path, part: str) -> None:
    """The checkpoint's ``lm/`` or ``lm_adapter/`` folder: present, with complete weights."""
    lm_folder = folder / part
    if not lm_folder.is_dir():
        raise CheckpointError(
            f"{folder} has no {part}/ folder, which its geoassist.json says holds the language "
            "model; the checkpoint is incomplete: copy the whole folder again or save the model again"
        )
    weights = sorted(lm_folder.glob("*.safetensors"))
    if not weights:
        raise CheckpointError(
            f"{lm_folder} holds no .safetensors weights; the checkpoint is incomplete: copy the "
            "whole folder again or save the model again"
        )
    for path in weights:
        check_safetensors(path)
    for name in ("config.json", "adapter_config.json"):
        config = lm_folder / name
        if config.is_file():
            try:
                json.loads(config.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise CheckpointError(
                    f"{config} is not valid JSON ({exc}); the checkpoint is damaged: copy it "
                    "again or save the model again"
                ) from exc


def score_lines(scores: dict[str, Any] | None) -> list[str]:
    """The card's "Scores" section body: one table row per evaluation and metric."""
    if not scores:
        return ["No evaluation recorded."]
    lines = ["| task | metric | value |", "|---|---|---|"]
    for task, metrics in scores.items():
        for metric, value in metrics.items():
            shown = f"{value:.4g}" if isinstance(value, float) else value
            lines.append(f"| {task} | {metric} | {shown} |")
    return lines


def _model_card(model, folder_name: str, card: dict[str, Any] | None) -> str:
    config: ModelConfig = model.config
    card = card or {}
    n_params = sum(p.numel() for p in model.parameters())
    vision = config.vision.resolved()
    lines = [
        f"# {card.get('name', config.name)}",
        "",
        card.get("summary", "A GeoAssist vision-language model for Earth-observation imagery."),
        "",
        "## Architecture",
        f"- vision: open_clip ViT, {vision.layers} blocks, width {vision.width}, patch {vision.patch_size}, "
        f"input {vision.image_size}px, features from block {config.vision.feature_layer}",
        f"- projector: {config.projector.type}, token pool {config.projector.token_pool}, "
        f"{config.num_image_tokens} visual tokens per image, up to {config.projector.max_images} images",
        f"- language model: {config.lm.source} {config.lm.name_or_path or ''}".rstrip(),
        f"- LoRA: {f'r={config.lora.r} alpha={config.lora.alpha}' if config.lora.enabled else 'none'}",
        f"- parameters: {n_params / 1e6:.1f} M",
        f"- input bands: {', '.join(config.preprocess.bands)}; size {config.preprocess.image_size}"
        + (
            f"; learned band adapter {config.vision.in_bands} → 3 before the ViT"
            if config.vision.in_bands != 3
            else ""
        ),
        "",
        "## Training data",
        card.get("training_data", "Not recorded (untrained or trained outside `geoassist train`)."),
        "",
        "## Scores",
    ]
    lines += score_lines(card.get("scores"))
    lines += [
        "",
        "## Use",
        "```python",
        "from geoassist import Assistant",
        f'assistant = Assistant.from_pretrained("{folder_name}")',
        'print(assistant.ask("scene.tif", "Describe the image.").text)',
        "```",
        "",
    ]
    return "\n".join(lines)


def save_checkpoint(
    model,
    folder: str | Path,
    *,
    card: dict[str, Any] | None = None,
    merge_lora: bool = False,
    half: bool = False,
) -> Path:
    """Write ``model`` (a GeoAssistModel) to ``folder`` atomically.

    ``half`` stores the trained parts (vision tower, projector, LoRA adapter) in float16
    to halve the download; they are read back into the model's own dtype.
    """
    dtype = torch.float16 if half else None
    folder = Path(folder)
    tmp = make_temp_dir(folder)  # makes the parent; removes what a killed save left beside it
    try:
        config: ModelConfig = copy.deepcopy(model.config)
        config.vision.weights = None  # the weights travel in vision.safetensors
        adapter_only = model.has_lora and not merge_lora and config.lm.source != "random"
        if adapter_only:
            model.lm.save_pretrained(str(tmp / "lm_adapter"), safe_serialization=True)
            if half:
                adapter = tmp / "lm_adapter" / "adapter_model.safetensors"
                _write_safetensors(_read_safetensors(adapter), adapter, dtype)
            lm_part = "adapter"
        else:
            lm = model.lm
            if model.has_lora:
                # Merge into a copy so the caller's (possibly training) model keeps its adapter;
                # the saved model then has no adapter, and its config says so.
                lm = copy.deepcopy(model.lm).merge_and_unload()
                config.lora.enabled = False
            lm.save_pretrained(str(tmp / "lm"), safe_serialization=True)
            lm_part = "full"
        (tmp / "config.json").write_text(config.to_json())
        (tmp / "preprocess.json").write_text(
            json.dumps(_as_plain(config.preprocess), indent=2) + "\n"
        )
        _write_safetensors(model.vision.open_clip_state_dict(), tmp / "vision.safetensors", dtype)
        if model.vision.band_adapter is not None:
            _write_safetensors(
                model.vision.band_adapter.state_dict(), tmp / "band_adapter.safetensors", dtype
            )
        _write_safetensors(model.projector.state_dict(), tmp / "projector.safetensors", dtype)
        if model.region_decoder is not None:
            from geoassist.model.region_decoder import save_region_decoder

            save_region_decoder(model.region_decoder, tmp, dtype)
        model.tokenizer.save_pretrained(str(tmp / "tokenizer"))
        (tmp / "README.md").write_text(_model_card(model, folder.name, card))
        meta = {"format_version": FORMAT_VERSION, "lm": lm_part, "geoassist_version": __version__}
        if card:
            meta["card"] = card
        (tmp / "geoassist.json").write_text(json.dumps(meta, indent=2) + "\n")
        replace_folder(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _as_plain(preprocess) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(preprocess)


def _check_no_pickles(folder: Path) -> None:
    pickles = sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.suffix in _PICKLE_SUFFIXES
    )
    if pickles:
        raise UnsafeCheckpointError(
            f"{folder} contains pickled files ({', '.join(pickles[:3])}); GeoAssist never unpickles. "
            "Remove them, or convert the weights to safetensors first"
        )


def load_checkpoint(
    folder: str | Path,
    *,
    device: str | torch.device = "cpu",
    trainable: bool = False,
    lm_kwargs: dict | None = None,
):
    """Load a GeoAssistModel saved by :func:`save_checkpoint`.

    ``lm_kwargs`` go to transformers' ``from_pretrained`` for the LM (e.g. a 4-bit
    ``quantization_config`` for QLoRA).
    """
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder} is not a GeoAssist checkpoint (no config.json)")
    _check_no_pickles(folder)
    try:
        meta = json.loads((folder / "geoassist.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"{folder}/geoassist.json is missing or corrupt ({exc}); re-save the checkpoint"
        ) from exc
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{folder} was written by a newer GeoAssist (format {meta['format_version']}); upgrade geoassist"
        )
    config = ModelConfig.from_json(folder / "config.json")
    if not (folder / "tokenizer").is_dir():
        raise CheckpointError(
            f"{folder} has no tokenizer/ folder; the checkpoint is incomplete: copy tokenizer/ "
            "from where the checkpoint came from, or save the model again"
        )
    _check_lm_part(folder, "lm_adapter" if meta.get("lm") == "adapter" else "lm")
    for name in ("vision", "projector", *(["band_adapter"] if config.vision.in_bands != 3 else [])):
        check_safetensors(folder / f"{name}.safetensors")
    # Only now the model code (transformers, peft: seconds to import), so that a damaged
    # folder is reported at once.
    from geoassist.model.lm import build_lm, load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    tokenizer = load_tokenizer(config.lm, folder=folder / "tokenizer")
    if meta.get("lm") == "adapter":
        from peft import PeftModel

        from geoassist.model.lm import quiet_peft

        base = build_lm(config.lm, vocab_size=len(tokenizer), **(lm_kwargs or {}))
        with quiet_peft():
            lm = PeftModel.from_pretrained(base, str(folder / "lm_adapter"), is_trainable=trainable)
    else:
        lm = build_lm(
            config.lm, vocab_size=len(tokenizer), weights_folder=folder / "lm", **(lm_kwargs or {})
        )
    model = GeoAssistModel(config, tokenizer, lm=lm)
    _load_into(model.vision.visual, folder / "vision.safetensors", "visual.")
    _load_into(model.projector, folder / "projector.safetensors", "")
    if model.vision.band_adapter is not None:
        _load_into(model.vision.band_adapter, folder / "band_adapter.safetensors", "")
    from geoassist.model.region_decoder import load_region_decoder_weights

    load_region_decoder_weights(model.region_decoder, folder)
    model.checkpoint_meta = meta
    return model.to(device)


def _load_into(module: torch.nn.Module, path: Path, prefix: str) -> None:
    state = _read_safetensors(path)
    state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"the weights in {path} do not match {path.parent / 'config.json'} (missing, extra "
            f"or differently shaped tensors: {str(exc)[:300]}); copy the checkpoint again or "
            "save the model again"
        ) from exc


def create_model(
    name_or_path: str | Path, *, device: str | torch.device = "cpu", lm_kwargs: dict | None = None
):
    """Resolve a checkpoint folder, a preset name, a published model name or a hub id to a model.

    - a folder holding ``config.json`` → :func:`load_checkpoint`;
    - a preset (``tiny``, ``mini``, …) → that architecture, freshly built (the LM
      part loads its pretrained weights where the preset names them);
    - a published name (``geoassist-mini``) → its shipped weights;
    - anything else → a hub repository id, downloaded when online.
    """
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        return load_checkpoint(path, device=device, lm_kwargs=lm_kwargs)
    if name in PRETRAINED:
        folder = weights_dir() / PRETRAINED[name]["folder"]
        if not (folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"the weights of {name!r} are not installed at {folder}. Build them with "
                f"`geoassist train --preset {name}`, or pick a preset ({', '.join(list_presets())}) or a folder"
            )
        return load_checkpoint(folder, device=device, lm_kwargs=lm_kwargs)
    if name in list_presets():
        from geoassist.model.lm import build_lm

        config = load_preset(name)
        tokenizer = load_tokenizer(config.lm)
        lm = build_lm(config.lm, vocab_size=len(tokenizer), **(lm_kwargs or {}))
        return GeoAssistModel(config, tokenizer, lm=lm).to(device)
    if path.suffix or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelNotFoundError(
            f"no model found for {name!r}: not a checkpoint folder, a preset ({', '.join(list_presets())}), "
            f"a published model ({', '.join(PRETRAINED)}) or a hub id (owner/name)"
        )
    return load_checkpoint(_download(name), device=device, lm_kwargs=lm_kwargs)


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(
            snapshot_download(
                repo_id,
                allow_patterns=[
                    "*.json",
                    "*.safetensors",
                    "*.md",
                    "*.txt",
                    "*.jinja",
                    "tokenizer/*",
                    "lm/*",
                    "lm_adapter/*",
                ],
            )
        )
    except Exception as exc:  # offline, missing repo, auth: all mean the same to the user
        raise ModelNotFoundError(
            f"cannot fetch {repo_id!r} from the Hugging Face hub ({exc.__class__.__name__}: {exc}); "
            "check the name and your connection, or pass a local checkpoint folder"
        ) from exc
