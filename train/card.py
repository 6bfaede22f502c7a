"""The model card a training run writes beside its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LM_LICENCES = {
    "smollm2": ("SmolLM2-135M-Instruct (HuggingFaceTB)", "Apache-2.0"),
    "random": ("randomly initialised LM", "n/a"),
}


def _sources(config) -> list[dict[str, Any]]:
    """One entry per training folder: recipe, record counts and licence from its manifest."""
    licences = {}
    try:
        from geoassist.data_recipes import list_recipes

        licences = {info.name: getattr(info, "licence", None) for info in list_recipes()}
    except ImportError:
        pass
    out = []
    for entry in config.data.train:
        path = Path(entry["path"] if isinstance(entry, dict) else entry)
        manifest = {}
        if (path / "manifest.json").is_file():
            manifest = json.loads((path / "manifest.json").read_text())
        recipe = manifest.get("recipe", path.name)
        out.append(
            {
                "path": str(path),
                "recipe": recipe,
                "records": manifest.get("written"),
                "licence": manifest.get("licence")
                or licences.get(recipe)
                or "see the dataset's terms",
            }
        )
    return out


def training_card(
    config, model, *, step: int, elapsed_s: float, n_trainable: int, scores: dict, hardware: str
) -> dict[str, Any]:
    lm_name, lm_licence = LM_LICENCES.get(
        model.config.lm.source, (model.config.lm.name_or_path, "see the model's card")
    )
    vision = model.config.vision
    vision_origin = vision.weights or (
        "trained from random initialisation by stage 0"
        if config.stage == 0
        else f"from {config.model}"
    )
    sources = _sources(config)
    data_lines = "\n".join(
        f"- `{s['recipe']}` ({s['records'] if s['records'] is not None else '?'} records, licence: {s['licence']}) from {s['path']}"
        for s in sources
    )
    return {
        "name": Path(config.out_dir).name,
        "summary": config.card.get(
            "summary",
            f"GeoAssist model after training stage {config.stage} (started from `{config.model}`).",
        ),
        "training_data": (
            f"{data_lines}\n\n"
            f"Stage {config.stage}, {step} optimizer steps of batch {config.optim.batch_size}×{config.optim.grad_accum}, "
            f"lr {config.optim.lr}, {n_trainable:,} trainable parameters, {elapsed_s / 60:.1f} min on {hardware}.\n\n"
            f"Base models: language model {lm_name} (licence {lm_licence}); vision tower {vision_origin}."
        ),
        "scores": scores,
        "stage": config.stage,
        "steps": step,
        "compute_minutes": round(elapsed_s / 60, 2),
        "hardware": hardware,
        "sources": sources,
    }
