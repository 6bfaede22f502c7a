"""Blind controls: the same records asked again without their own image.

A model that answers as well without the image as with it is answering from the question
alone (a language prior). ``geoassist eval TASK --model M --control blank|shuffled|both``
asks every record a second time:

- ``blank``: each image replaced by a flat image of the dataset's mean colour (per band, over
  the evaluated images), of the same size and bands;
- ``shuffled``: each record gets the image of another record of the same split, by a seeded
  derangement of the distinct images (a change pair is swapped as a whole pair), so no record
  keeps its own image. This is the control that counts: a blank image is unlike any training
  image, so a model can learn to answer "no" to it, while a shuffled image is a real scene that
  simply does not go with the question.

The report gains ``control_blank`` / ``control_shuffled`` (each with its own ``metrics`` and
``by_type``, and intervals) and ``by_type[TYPE]["visual_gain_blank" | "visual_gain_shuffled"]``:
the accuracy with the real image minus the accuracy under that control, with a paired 95 %
bootstrap interval (:mod:`geoassist.eval.intervals`).
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import GeoAssistError
from geoassist.eval.intervals import (
    N_RESAMPLES,
    RESAMPLED_SCORERS,
    accuracy_values,
    attach,
    bootstrap,
    image_cluster,
    is_accuracy,
)
from geoassist.eval.targets import EvalDataError, resolve_image

logger = logging.getLogger(__name__)

CONTROLS = ("blank", "shuffled")
CONTROL_CHOICES = ("blank", "shuffled", "both")
DEFAULT_SEED = 0
MEAN_COLOUR_IMAGES = 200  # images averaged for the blank control's colour (chosen by hash)


def control_names(control: str | None) -> tuple[str, ...]:
    """The controls ``--control`` asks for (``both`` is blank then shuffled)."""
    if control is None:
        return ()
    if control == "both":
        return CONTROLS
    if control not in CONTROLS:
        raise EvalDataError(f"--control is one of {', '.join(CONTROL_CHOICES)}, got {control!r}")
    return (control,)


@dataclass
class ControlSet:
    """The records of one control, and where each evaluated record went (None: not asked)."""

    name: str
    records: list[dict[str, Any]]
    position: list[int | None]
    info: dict[str, Any] = field(default_factory=dict)


def _with_images(record: dict[str, Any], images: list[str]) -> dict[str, Any]:
    return {**record, "images": images, "meta": {**(record.get("meta") or {}), "control": True}}


def _image_paths(record: dict[str, Any], image_root: str | Path | None) -> list[str]:
    return [str(resolve_image(record, image_root, i)) for i in range(len(record["images"]))]


def _hash(key: str) -> str:
    return hashlib.sha1(key.encode()).hexdigest()


# ------------------------------------------------------------------------------- blank


def _mean_colours(paths: Sequence[str]) -> dict[tuple[int, str], np.ndarray]:
    """Per-band mean colour by (band count, dtype), over up to MEAN_COLOUR_IMAGES images."""
    from geoassist.io import load_image

    chosen = sorted(set(paths), key=_hash)[:MEAN_COLOUR_IMAGES]
    sums: dict[tuple[int, str], list[np.ndarray]] = {}
    for path in chosen:
        try:
            array = load_image(path).array
        except GeoAssistError:
            continue  # the main run already reported it
        key = (array.shape[2], str(array.dtype))
        sums.setdefault(key, []).append(array.reshape(-1, array.shape[2]).mean(axis=0))
    return {key: np.mean(values, axis=0) for key, values in sums.items()}


def _write_blank(folder: Path, image, colour: np.ndarray) -> Path:
    """A flat image of ``colour`` with the size, bands and dtype of ``image``."""
    array = np.empty_like(image.array)
    info = np.iinfo(array.dtype) if np.issubdtype(array.dtype, np.integer) else None
    value = np.round(colour) if info is not None else colour
    if info is not None:
        value = np.clip(value, info.min, info.max)
    array[...] = value.astype(array.dtype)
    h, w, c = array.shape
    name = f"blank_{w}x{h}x{c}_{array.dtype}_{_hash(','.join(image.band_names))[:8]}"
    if array.dtype == np.uint8 and c in (1, 3):
        from PIL import Image as PILImage

        path = folder / f"{name}.png"
        if not path.exists():
            PILImage.fromarray(array[..., 0] if c == 1 else array).save(path)
        return path
    import rasterio

    path = folder / f"{name}.tif"
    if not path.exists():
        with rasterio.open(
            path, "w", driver="GTiff", width=w, height=h, count=c, dtype=str(array.dtype)
        ) as dst:
            dst.write(np.moveaxis(array, 2, 0))
            dst.descriptions = tuple(image.band_names)
    return path


def blank_control(
    records: Sequence[dict[str, Any]], image_root: str | Path | None, folder: Path
) -> ControlSet:
    """Every image replaced by the dataset's mean colour (same size and bands), in ``folder``."""
    from geoassist.io import load_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = [p for r in records for p in _image_paths(r, image_root)]
    colours = _mean_colours(paths)
    blanks: dict[str, str | None] = {}
    out: list[dict[str, Any]] = []
    position: list[int | None] = []
    for record in records:
        images = []
        for path in _image_paths(record, image_root):
            if path not in blanks:
                try:
                    image = load_image(path)
                    colour = colours[(image.array.shape[2], str(image.array.dtype))]
                    blanks[path] = str(_write_blank(folder, image, colour))
                except (GeoAssistError, KeyError):
                    blanks[path] = None
            images.append(blanks[path])
        if not images or any(p is None for p in images):
            position.append(None)
            continue
        position.append(len(out))
        out.append(_with_images(record, images))
    info = {
        "mean_colour": {
            f"{bands} bands {dtype}": [round(float(v), 3) for v in colour]
            for (bands, dtype), colour in sorted(colours.items())
        },
        "images_averaged": min(len(set(paths)), MEAN_COLOUR_IMAGES),
    }
    return ControlSet("blank", out, position, info)


# ---------------------------------------------------------------------------- shuffled


def _derangement(keys: list[tuple[str, ...]], rng: random.Random) -> dict:
    """A random cyclic permutation (Sattolo): no key is mapped to itself."""
    order = list(keys)
    rng.shuffle(order)
    return {order[i]: order[(i + 1) % len(order)] for i in range(len(order))}


def shuffled_control(
    records: Sequence[dict[str, Any]], image_root: str | Path | None, seed: int = DEFAULT_SEED
) -> ControlSet:
    """Every record gets the image(s) of another record of its split: a seeded derangement of
    the distinct images (pairs move as pairs). A split with one image only borrows from the
    other splits; a record with no possible partner is left out and counted."""
    own = [tuple(_image_paths(r, image_root)) for r in records]
    groups: dict[tuple[str, int], list[tuple[str, ...]]] = {}
    for record, images in zip(records, own, strict=True):
        if images:
            group = groups.setdefault((str(record.get("split")), len(images)), [])
            if images not in group:
                group.append(images)
    partner: dict[tuple[str, int, tuple[str, ...]], tuple[str, ...]] = {}
    for (split, n_images), keys in sorted(groups.items()):
        rng = random.Random(f"{seed}:{split}:{n_images}")
        if len(keys) >= 2:
            for key, other in _derangement(sorted(keys), rng).items():
                partner[(split, n_images, key)] = other
            continue
        pool = sorted(
            {k for (s, n), ks in groups.items() if n == n_images and s != split for k in ks}
            - set(keys)
        )
        if pool:
            partner[(split, n_images, keys[0])] = rng.choice(pool)
    out: list[dict[str, Any]] = []
    position: list[int | None] = []
    for record, images in zip(records, own, strict=True):
        other = partner.get((str(record.get("split")), len(images), images)) if images else None
        if other is None:
            position.append(None)
            continue
        position.append(len(out))
        out.append(_with_images(record, list(other)))
    return ControlSet("shuffled", out, position, {"seed": seed})


# --------------------------------------------------------------------------- running


def run_controls(
    control: str | None,
    task: str,
    records: Sequence[dict[str, Any]],
    assistant: Any,
    image_root: str | Path | None,
    *,
    sizes: Mapping[str, tuple[int, int]],
    predict_options: Mapping[str, Any],
    score_options: Mapping[str, Any],
    seed: int = DEFAULT_SEED,
) -> dict[str, tuple[ControlSet, dict[str, Any], list[dict[str, Any]]]]:
    """Ask ``assistant`` every record again under each control and score the answers.

    Answers are scored against the record's own image size (a shuffled image may have another
    size), so box and mask answers are read exactly as in the real run.
    """
    import tempfile

    from geoassist.eval.harness import predict, score
    from geoassist.eval.targets import record_image_size

    names = control_names(control)
    own_sizes: dict[str, tuple[int, int]] = {}
    for record in records if names else ():
        if record["id"] in sizes:
            own_sizes[record["id"]] = tuple(sizes[record["id"]])
        elif record.get("images"):
            try:
                own_sizes[record["id"]] = record_image_size(record, image_root)
            except (GeoAssistError, OSError):  # unreadable: the real run counted it wrong
                pass
    out: dict[str, tuple[ControlSet, dict[str, Any], list[dict[str, Any]]]] = {}
    with tempfile.TemporaryDirectory(prefix="geoassist-control-") as tmp:
        for name in names:
            if name == "blank":
                cset = blank_control(records, image_root, Path(tmp))
            else:
                cset = shuffled_control(records, image_root, seed)
            if not cset.records:
                logger.warning("control %s: no record could be asked (no images)", name)
                continue
            predictions, _, errors = predict(
                assistant, cset.records, image_root, desc=f"control {name}", **predict_options
            )
            report, items, _ = score(
                task, cset.records, predictions, image_root, sizes=own_sizes, **score_options
            )
            report["errors"] = len(errors)
            out[name] = (cset, report, items)
    return out


# ------------------------------------------------------------------- scoring and gains


def _units(task: str, report: Mapping[str, Any], items: Sequence[dict[str, Any]]):
    """``(name, scorer, metrics, by_type, item indices)`` for each independently scored part."""
    from geoassist.eval.harness import DEFAULT_SCORERS, TASK_RECORDS

    if task == "synth":
        for sub, part in (report.get("tasks") or {}).items():
            indices = [i for i, it in enumerate(items) if it["task"] == sub]
            yield sub, DEFAULT_SCORERS[sub], part["metrics"], part["by_type"], indices
        return
    accepted = TASK_RECORDS[task]
    scorers = {accepted[it["task"]] for it in items}
    if len(scorers) == 1:
        yield None, scorers.pop(), report["metrics"], report["by_type"], list(range(len(items)))


def _summarizer(scorer: str, ctx_args: Mapping[str, Any]):
    from geoassist.eval.scorers import SCORERS, ScoreContext

    def summarize(items: list[dict[str, Any]]):
        ctx = ScoreContext(**{**ctx_args, "sizes": dict(ctx_args.get("sizes") or {})})
        summary = SCORERS[scorer].summarize(items, ctx)
        return accuracy_values(summary.metrics, summary.by_type)

    return summarize


def annotate(
    task: str,
    report: dict[str, Any],
    items: list[dict[str, Any]],
    records: Sequence[dict[str, Any]],
    ctx_args: Mapping[str, Any],
    controls: Mapping[str, tuple[ControlSet, dict[str, Any], list[dict[str, Any]]]] | None = None,
    *,
    resamples: int = N_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> None:
    """Add 95 % intervals to ``report`` (and to each control's report), and the visual gains.

    ``controls`` maps a control name to ``(control set, its scored report, its items)``.
    """
    from geoassist.eval.harness import PRIMARY_METRIC

    controls = dict(controls or {})
    clusters_of = {r["id"]: image_cluster(r) for r in records}
    for name, (cset, c_report, c_items) in controls.items():
        c_clusters = [clusters_of[it["id"]] for it in c_items]
        for _sub, scorer, metrics, by_type, idx in _units(task, c_report, c_items):
            if scorer in RESAMPLED_SCORERS and idx:
                unit = [c_items[i] for i in idx]
                found, _ = bootstrap(
                    _summarizer(scorer, ctx_args),
                    unit,
                    [c_clusters[i] for i in idx],
                    n=resamples,
                    seed=seed,
                )
                attach(metrics, by_type, found)
        report[f"control_{name}"] = {
            "n": c_report["n"],
            "not_controlled": sum(p is None for p in cset.position),
            **cset.info,
            "metrics": c_report["metrics"],
            "by_type": c_report["by_type"],
            **({"tasks": c_report["tasks"]} if "tasks" in c_report else {}),
            "parse_failure_rate": c_report.get("parse_failure_rate"),
            "visual_gain": {},
        }
    for sub, scorer, metrics, by_type, idx in _units(task, report, items):
        if scorer not in RESAMPLED_SCORERS or not idx:
            continue
        unit = [items[i] for i in idx]
        summarize = _summarizer(scorer, ctx_args)
        paired = {}
        for name, (_cset, _c_report, c_items) in controls.items():
            where = {
                it["id"]: j for j, it in enumerate(c_items) if sub is None or it["task"] == sub
            }
            order = sorted(where, key=where.get)
            c_unit = [c_items[where[i]] for i in order]
            slot = {rid: j for j, rid in enumerate(order)}
            paired[name] = (c_unit, [slot.get(it["id"]) for it in unit])
        found, gain_found = bootstrap(
            summarize, unit, [clusters_of[it["id"]] for it in unit], paired, n=resamples, seed=seed
        )
        attach(metrics, by_type, found)
        primary = PRIMARY_METRIC.get(scorer)
        if sub is not None and is_accuracy(primary or "") and report["by_type"].get(sub):
            interval = found.get(("metrics", primary))
            if interval is not None:
                report["by_type"][sub]["score_ci95"] = interval
        for name, (c_unit, position) in paired.items():
            asked = [unit[i] for i, p in enumerate(position) if p is not None]
            if not asked:
                continue
            ours, theirs = summarize(asked), summarize(list(c_unit))
            control_entry = report[f"control_{name}"]
            for key in [k for k in ours if k in theirs]:
                gain = round(ours[key] - theirs[key], 6)
                interval = gain_found[name].get(key)
                if key[0] == "by_type" and key[2] == "accuracy":
                    by_type[key[1]][f"visual_gain_{name}"] = gain
                    if interval is not None:
                        by_type[key[1]][f"visual_gain_{name}_ci95"] = interval
                elif key[0] == "metrics":
                    label = key[1] if sub is None else f"{sub}.{key[1]}"
                    control_entry["visual_gain"][label] = gain
                    if interval is not None:
                        control_entry["visual_gain"][f"{label}_ci95"] = interval
                    if sub is not None and key[1] == primary:
                        report["by_type"][sub][f"visual_gain_{name}"] = gain
                        if interval is not None:
                            report["by_type"][sub][f"visual_gain_{name}_ci95"] = interval


__all__ = [
    "CONTROLS",
    "CONTROL_CHOICES",
    "ControlSet",
    "annotate",
    "blank_control",
    "control_names",
    "run_controls",
    "shuffled_control",
]
