"""Training mixtures of built recipe outputs: weights, caps, dedupe by image content, and an eval-leak check.

A mix config (YAML)::

    seed: 0
    sources:
      - path: out/rsvqa_lr        # a recipe output folder
        weight: 1.0               # 2 = every record twice, 0.5 = a seeded half
        max_records: 20000        # cap after weighting (optional)
        splits: [train]           # only these splits (optional)
        tasks: [vqa, counting]    # only these tasks (optional)
      - path: out/geosynth
    eval:                         # outputs whose images must never be trained on (optional)
      - path: out/rsvqa_lr
        splits: [test]
    eval_splits: [val, test, test_phili]   # splits of the sources that count as evaluation
    dedupe: true                  # drop records repeating an earlier one's images and conversation
    on_leak: error                # or "drop": training records showing an eval image

The output is a recipe-output folder (Parquet shards, ``manifest.json``, ``rejected.jsonl``)
whose ``roots/`` holds one link per source to that source's image root; record image and mask
paths are prefixed with the source's link name, so ``image_root(mix)`` works as for any output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geoassist.atomic import make_temp_dir

from .build import RecordWriter, _is_our_output, _publish
from .core import RecipeError, Reject
from .schema import Record
from .store import image_root, read_manifest, read_records

logger = logging.getLogger(__name__)

DEFAULT_EVAL_SPLITS = ("val", "valid", "validation", "test", "test_phili", "test1", "test2")
_KEYS = {"seed", "sources", "eval", "eval_splits", "dedupe", "on_leak"}
_SOURCE_KEYS = {"path", "weight", "max_records", "splits", "tasks"}


def load_config(config: str | os.PathLike | dict[str, Any]) -> dict[str, Any]:
    """Read and check a mix config (a YAML/JSON file or a dict); relative paths are taken from the file's folder."""
    base = Path.cwd()
    if not isinstance(config, dict):
        import yaml

        path = Path(config)
        if not path.is_file():
            raise RecipeError(f"mix config {path} not found")
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        base = path.parent
    if not isinstance(config, dict):
        raise RecipeError(
            "a mix config is a mapping with 'sources' (and optionally eval, seed, dedupe, on_leak)"
        )
    unknown = set(config) - _KEYS
    if unknown:
        raise RecipeError(f"unknown mix config keys {sorted(unknown)}; known: {sorted(_KEYS)}")
    sources = config.get("sources") or []
    if not sources:
        raise RecipeError("the mix config lists no sources")

    def entry(value: Any, where: str) -> dict[str, Any]:
        value = {"path": value} if isinstance(value, str) else dict(value)
        bad = set(value) - _SOURCE_KEYS
        if bad or "path" not in value:
            raise RecipeError(
                f"{where} entries are a folder or {{{', '.join(sorted(_SOURCE_KEYS))}}}; got {value!r}"
            )
        path = Path(value["path"]).expanduser()
        value["path"] = path if path.is_absolute() else (base / path)
        read_manifest(value["path"])  # fails early with a helpful message
        weight = float(value.get("weight", 1.0))
        if weight < 0:
            raise RecipeError(f"weight of {value['path']} must be >= 0")
        value["weight"] = weight
        return value

    on_leak = config.get("on_leak", "error")
    if on_leak not in ("error", "drop"):
        raise RecipeError(f"on_leak is 'error' or 'drop', got {on_leak!r}")
    return {
        "seed": int(config.get("seed", 0)),
        "sources": [entry(s, "sources") for s in sources],
        "eval": [entry(s, "eval") for s in config.get("eval") or []],
        "eval_splits": list(config.get("eval_splits", DEFAULT_EVAL_SPLITS)),
        "dedupe": bool(config.get("dedupe", True)),
        "on_leak": on_leak,
    }


class ImageHasher:
    """Content hashes of images (decoded pixels when Pillow reads them, file bytes otherwise), cached by path."""

    def __init__(self) -> None:
        self.cache: dict[str, str] = {}

    def __call__(self, path: Path) -> str:
        key = str(path)
        if key not in self.cache:
            self.cache[key] = _content_hash(path)
        return self.cache[key]


def _content_hash(path: Path) -> str:
    h = hashlib.sha256()
    try:
        from PIL import Image

        with Image.open(path) as im:
            h.update(f"{im.mode}:{im.size}".encode())
            h.update(im.tobytes())
        return "px:" + h.hexdigest()
    except Exception:
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            return "file:" + h.hexdigest()
        except OSError:
            return f"missing:{path}"


def _selected(source: dict[str, Any], eval_splits: list[str]) -> Iterator[Record]:
    for record in read_records(source["path"]):
        if source.get("splits") is not None and record["split"] not in source["splits"]:
            continue
        if source.get("tasks") is not None and record["task"] not in source["tasks"]:
            continue
        yield record


def _plan(source: dict[str, Any], n: int, seed: int) -> list[int]:
    """How many times each of the ``n`` eligible records is used (weight, then cap), seeded."""
    weight = source["weight"]
    whole, fraction = int(weight), weight - int(weight)
    uses = [whole] * n
    rng = random.Random(f"{seed}:{source['path']}")
    if fraction > 0 and n:
        for i in rng.sample(range(n), round(fraction * n)):
            uses[i] += 1
    cap = source.get("max_records")
    if cap is not None and sum(uses) > int(cap):
        slots = [i for i, u in enumerate(uses) for _ in range(u)]
        keep = Counter(rng.sample(slots, int(cap)))
        uses = [keep.get(i, 0) for i in range(n)]
    return uses


def _prefix(record: Record, key: str, copy: int) -> Record:
    out = dict(record)
    out["images"] = [f"{key}/{p}" for p in record["images"]]
    targets = dict(record.get("targets") or {})
    if "mask" in targets:
        targets["mask"] = f"{key}/{targets['mask']}"
    out["targets"] = targets
    if copy:
        out["id"] = f"{record['id']}~{copy}"
    return Record(**out)  # type: ignore[typeddict-item]


def mix(config: str | os.PathLike | dict[str, Any], out: str | os.PathLike) -> dict[str, Any]:
    """Write the mixture described by ``config`` to ``out``; returns its manifest."""
    cfg = load_config(config)
    out_path = Path(out).expanduser().resolve()
    if out_path.exists() and not (
        out_path.is_dir() and (not any(out_path.iterdir()) or _is_our_output(out_path))
    ):
        raise RecipeError(
            f"{out_path} exists and is not a recipe output; choose an empty or new folder for --out"
        )
    hasher = ImageHasher()
    eval_splits = cfg["eval_splits"]

    # every image shown in evaluation: the eval entries, and the eval splits of the sources
    eval_images: set[str] = set()
    for entry in [*cfg["eval"], *cfg["sources"]]:
        root = image_root(entry["path"])
        from_eval_entry = entry in cfg["eval"]
        for record in read_records(entry["path"]):
            if from_eval_entry:
                if entry.get("splits") is not None and record["split"] not in entry["splits"]:
                    continue
            elif record["split"] not in eval_splits and not read_manifest(entry["path"]).get(
                "eval_only"
            ):
                continue
            eval_images.update(hasher(root / p) for p in record["images"])

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(out_path)
    try:
        writer = RecordWriter(tmp)
        (tmp / "roots").mkdir()
        seen: set[str] = set()
        keys: list[str] = []
        report = []
        leaks, duplicates = 0, 0
        leak_examples: list[str] = []
        for source in cfg["sources"]:
            manifest = read_manifest(source["path"])
            if manifest.get("eval_only"):
                raise RecipeError(
                    f"{source['path']} is the eval-only benchmark {manifest['recipe']!r}; list it under eval:, not sources:"
                )
            key = _unique_key(Path(source["path"]).name, keys)
            keys.append(key)
            root = image_root(source["path"])
            os.symlink(root, tmp / "roots" / key, target_is_directory=True)
            n = sum(1 for _ in _selected(source, eval_splits))
            uses = _plan(source, n, cfg["seed"])
            written_here = 0
            for record, count in zip(_selected(source, eval_splits), uses, strict=True):
                for copy in range(count):
                    hashes = [hasher(root / p) for p in record["images"]]
                    if record["split"] not in eval_splits and any(h in eval_images for h in hashes):
                        leaks += 1
                        if len(leak_examples) < 5:
                            leak_examples.append(
                                f"{record['id']} ({record['images'][0] if record['images'] else '-'})"
                            )
                        if cfg["on_leak"] == "error":
                            continue
                        writer.add_reject(
                            Reject(
                                record["id"],
                                "eval image in training split",
                                ", ".join(record["images"]),
                            )
                        )
                        continue
                    if cfg["dedupe"] and copy == 0:
                        fingerprint = hashlib.sha256(
                            json.dumps([hashes, record["conversations"]], sort_keys=True).encode()
                        ).hexdigest()
                        if fingerprint in seen:
                            duplicates += 1
                            writer.add_reject(
                                Reject(
                                    record["id"],
                                    "duplicate",
                                    "same images and conversation as an earlier record",
                                )
                            )
                            continue
                        seen.add(fingerprint)
                    writer.add_record(_prefix(record, key, copy))
                    written_here += 1
            report.append(
                {
                    "path": str(source["path"]),
                    "key": key,
                    "recipe": manifest["recipe"],
                    "eligible": n,
                    "written": written_here,
                }
            )
        if leaks and cfg["on_leak"] == "error":
            raise RecipeError(
                f"{leaks} training record(s) show images of an evaluation split, e.g. {', '.join(leak_examples)}; "
                "remove them from the sources or set on_leak: drop"
            )
        header = {
            "recipe": "mix",
            "source": "mix",
            "title": "mixture",
            "licence": "the licences of its sources",
            "citation": "; ".join(
                sorted({read_manifest(s["path"])["citation"] for s in cfg["sources"]})
            ),
            "src": "",
            "image_root": "roots",
            "splits": None,
            "options": {
                "seed": cfg["seed"],
                "dedupe": cfg["dedupe"],
                "on_leak": cfg["on_leak"],
                "eval_splits": eval_splits,
            },
            "eval_only": False,
            "sources": report,
            "by_source": {r["key"]: r["written"] for r in report},
            "duplicates_removed": duplicates,
            "leaks_removed": leaks,
            "eval_images": len(eval_images),
        }
        manifest = writer.close(header)
        _publish(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _unique_key(name: str, taken: list[str]) -> str:
    key = "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "source"
    candidate, n = key, 1
    while candidate in taken:
        n += 1
        candidate = f"{key}_{n}"
    return candidate
