"""Finding the records to score from ``--data``.

``--data`` is one of:

- a recipe output folder or a raw dataset folder in its published layout (the CHOICE and
  GeoChat-Bench benchmarks included) — read with :func:`geoassist.data_recipes.load_records`,
  which runs the recipe for raw folders (detected from the layout unless ``recipe`` names it);
- a JSONL file of records in the record schema (images relative to the file's folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geoassist.eval.targets import EvalDataError

__all__ = ["load_eval_data", "read_records_jsonl"]


def read_records_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Records, one JSON object per line, each checked against the record schema."""
    from geoassist.data_recipes.schema import RecordError, validate_record

    path = Path(path)
    records = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                validate_record(record)
            except json.JSONDecodeError as exc:
                raise EvalDataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except RecordError as exc:
                raise EvalDataError(f"{path}:{number}: {exc}") from None
            records.append(record)
    return records


def load_eval_data(
    data: str | Path,
    *,
    task: str | None = None,
    recipe: str | None = None,
    split: str | None = None,
    real_split: str | None = "test",
) -> tuple[list[dict[str, Any]], Path]:
    """``(records, image_root)`` for ``--data``; ``split`` keeps only that (recipe) split.

    Records of real datasets keep only the images of ``real_split`` in the committed real-data
    split (:mod:`geoassist.splits`; ``None`` keeps them all), so an evaluation never scores
    images a model was trained on. Other sources (GeoSynth, your own data) are not filtered.

    ``task="synth"`` without a split keeps the ``test`` split when there is one. GeoSynth data
    needs no files: pass its generation spec (``seed=0,size=256``) with ``recipe="geosynth"``.
    """
    data = Path(data)
    if split is None and task == "synth" and recipe == "geosynth":
        split = "test"
    if not data.exists() and recipe is None:
        raise EvalDataError(f"--data {data} does not exist")
    if data.is_file():
        if data.suffix != ".jsonl":
            raise EvalDataError(
                f"--data {data}: a file must be a .jsonl of records; otherwise pass a folder"
            )
        records, root = read_records_jsonl(data), data.parent
    else:
        from geoassist.data_recipes import RecipeError, load_records

        if recipe is None and task == "choice" and not (data / "manifest.json").is_file():
            recipe = "choice"
        try:
            loaded, root = load_records(data, recipe=recipe, split=split)
        except RecipeError as exc:
            raise EvalDataError(f"cannot read --data {data}: {exc}") from exc
        records, root = list(loaded), Path(root)
    if split is None and task == "synth" and any(r.get("split") == "test" for r in records):
        split = "test"
    if split is not None:
        records = [r for r in records if r.get("split") == split]
        if not records:
            raise EvalDataError(f"no records of split {split!r} in {data}")
    if real_split is not None:
        from geoassist.splits import filter_records

        kept = filter_records(records, real_split)
        if records and not kept:
            raise EvalDataError(
                f"no record of {data} is on the {real_split!r} side of the real-data split; "
                "pass --real-split all to score every image (e.g. to check a reader)"
            )
        records = kept
    return records, root
