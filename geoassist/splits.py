"""One train / val / test split for every real dataset GeoAssist trains or evaluates on.

The split is a committed file of image ids (``geoassist/data/real_split.json``, ids only, never
imagery), so training skips exactly the images every evaluation keeps. It is keyed by the
*image*, not by the record: all questions about one RSVQA image, and the before and after
images of one change pair, fall on the same side. Tiles cut from one LEVIR-CD parent image
share a side too, so neighbouring crops never straddle train and test.

Rules (also in docs/DATA.md and docs/EVAL.md):

- about 20 % of each source's images are ``test`` and 10 % ``val``, chosen by a seeded hash of
  the image id (UC Merced: per class, so the 21 classes keep their balance);
- evaluation-only sources (RSSCN7, the DOTA and iSAID scenes, CHOICE) are ``test`` throughout
  and never reach a training batch;
- an image id the file does not list, of a source it does list, is assigned by the same seeded
  hash (below 0.2 test, below 0.3 val, train otherwise; ``test`` for evaluation-only sources),
  so a full release can be used without regenerating the file and still splits the same way
  every time;
- a source the file does not list (GeoSynth, the knowledge corpus, your own data) has no real
  split: its recipes' own splits apply.

Regenerate the file from an ``rs-samples`` folder with::

    python -m geoassist.splits --samples ../shared/rs-samples --out geoassist/data/real_split.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from geoassist.errors import GeoAssistError

SPLIT_FILE = Path(__file__).parent / "data" / "real_split.json"
SPLITS = ("train", "val", "test")
TEST_FRACTION = 0.2
VAL_FRACTION = 0.1
SEED = "geoassist-real-split-v1"
REGENERATE = "python -m geoassist.splits --samples ../shared/rs-samples --out " + str(
    Path("geoassist") / "data" / "real_split.json"
)


class SplitError(GeoAssistError, ValueError):
    """The real-data split cannot answer: unknown source, bad split name or a broken split file."""


@dataclass(frozen=True)
class RealSource:
    """A real dataset: where its images lie in ``rs-samples`` and how its image ids are formed."""

    name: str  # the recipe / record ``source`` name
    folder: str  # relative to the rs-samples root
    # image globs relative to ``folder`` (excerpt and full-release layouts)
    patterns: tuple[str, ...]
    eval_only: bool = False
    stratify_by_folder: bool = False  # stratify by the image's parent folder (the class)
    path_ids: bool = False  # id = path without suffix (stems repeat across CHOICE task folders)
    group_pattern: str | None = None  # regex whose first group names the images that share a side
    exclude: str | None = None  # regex of file names under ``patterns`` that are not images


SOURCES: tuple[RealSource, ...] = (
    RealSource("rsvqa_lr", "rsvqa/LR_reduced", ("images/*.png", "Images_LR/*.tif")),
    RealSource("rsvqa_hr", "rsvqa/HR_reduced", ("images/*.png", "Data/*.tif")),
    RealSource(
        "ucm", "scenes/ucmerced/UCMerced_LandUse", ("Images/*/*.tif",), stratify_by_folder=True
    ),
    RealSource("rsscn7", "scenes/rsscn7", ("*/*.jpg",), eval_only=True),
    RealSource(
        "levir_cd",
        "change_detection/samples_LEVIR",
        ("A/*.png",),
        group_pattern=r"^((?:train|val|test)_\d+)_",
    ),
    RealSource("dsifn_cd", "change_detection/samples_DSIFN", ("A/*.png",)),
    RealSource("levir_cc", "change_captioning", ("A/*.png",)),
    RealSource("dota", "dota", ("images/*.png",), eval_only=True),
    RealSource(
        "isaid", "isaid", ("*/images/*.png",), eval_only=True, exclude=r"_instance_(id|color)_RGB"
    ),
    RealSource("choice", "choice/CHOICE_subset", ("**/images/*",), eval_only=True, path_ids=True),
)
_BY_NAME = {s.name: s for s in SOURCES}


def _unit(key: str) -> float:
    """A number in [0, 1) from a seeded hash of ``key``: the same on every machine and run."""
    digest = hashlib.sha256(f"{SEED}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _group(source: RealSource, image_id: str) -> str:
    if source.group_pattern:
        match = re.match(source.group_pattern, image_id)
        if match:
            return match.group(1)
    return image_id


def _hash_rule(source: RealSource, image_id: str) -> str:
    if source.eval_only:
        return "test"
    u = _unit(f"{source.name}:{_group(source, image_id)}")
    return "test" if u < TEST_FRACTION else "val" if u < TEST_FRACTION + VAL_FRACTION else "train"


def image_id_of(source: str, image_path: str) -> str:
    """The split id of an image given its path relative to the dataset root.

    The file stem (``images/46.png`` and ``Images_LR/46.tif`` are both RSVQA image ``46``;
    ``A/x.png`` and ``B/x.png`` are both pair ``x``), or for CHOICE, whose task folders
    reuse file names, the whole path without its suffix.
    """
    path = Path(image_path)
    spec = _BY_NAME.get(source)
    if spec is not None and spec.path_ids:
        return path.with_suffix("").as_posix()
    return path.stem


def record_image_id(record: Mapping[str, Any]) -> str:
    """The split id of a record: that of its first image (every image of a pair shares it)."""
    images = record.get("images") or []
    if not images:
        raise SplitError(
            f"record {record.get('id', '?')} has no image, so it has no place in the real split"
        )
    return image_id_of(str(record["source"]), images[0])


def has_real_split(source: str) -> bool:
    """Whether ``source`` is a real dataset the split covers (else its recipe's splits apply)."""
    return source in _BY_NAME


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    file = Path(path)
    if not file.is_file():
        raise SplitError(
            f"the real-data split file {file} is missing; regenerate it with `{REGENERATE}`"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        sources = data["sources"]
        lookup = {
            name: {image_id: split for split in SPLITS for image_id in entry["ids"][split]}
            for name, entry in sources.items()
        }
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SplitError(
            f"the real-data split file {file} is unreadable ({exc}); regenerate it with `{REGENERATE}`"
        ) from None
    return {"data": data, "lookup": lookup}


def _split_file(path: str | Path | None) -> str:
    return str(Path(path) if path is not None else SPLIT_FILE)


def _source(source: str) -> RealSource:
    spec = _BY_NAME.get(source)
    if spec is None:
        raise SplitError(
            f"{source!r} is not a real dataset of the split (known: {', '.join(_BY_NAME)}); "
            "its recipe's own splits apply — check has_real_split() before asking"
        )
    return spec


def real_split(source: str, image_id: str, *, split_file: str | Path | None = None) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one image of a real dataset.

    Ids listed in the split file get their listed split; other ids of a known source follow the
    file's documented hash rule (see the module docstring). An unknown source raises
    :class:`SplitError`.
    """
    spec = _source(source)
    lookup = _load(_split_file(split_file))["lookup"]
    listed = lookup.get(source, {}).get(image_id)
    return listed if listed is not None else _hash_rule(spec, image_id)


def record_split(record: Mapping[str, Any], *, split_file: str | Path | None = None) -> str | None:
    """The real split of a record, or None when its source is not a real dataset."""
    if not has_real_split(str(record.get("source"))):
        return None
    return real_split(str(record["source"]), record_image_id(record), split_file=split_file)


def split_ids(source: str, split: str, *, split_file: str | Path | None = None) -> set[str]:
    """The image ids the split file lists for ``source`` in ``split``."""
    _source(source)
    if split not in SPLITS:
        raise SplitError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = _load(_split_file(split_file))["data"]
    entry = data["sources"].get(source)
    return set(entry["ids"][split]) if entry else set()


def filter_records(
    records: Iterable[Mapping[str, Any]], keep: str, *, split_file: str | Path | None = None
) -> list[Any]:
    """Records of real datasets whose image is in split ``keep``; other sources pass unchanged."""
    if keep not in SPLITS:
        raise SplitError(f"split must be one of {', '.join(SPLITS)}, got {keep!r}")
    out = []
    for record in records:
        split = record_split(record, split_file=split_file)
        if split is None or split == keep:
            out.append(record)
    return out


# ---- generating the file ------------------------------------------------------------------


def _round_half_up(x: float) -> int:
    return int(x + 0.5)


def _list_ids(samples: Path, spec: RealSource) -> dict[str, str]:
    """``{image id: stratum}`` for the images of ``spec`` under ``samples`` (empty when absent)."""
    root = samples / spec.folder
    ids: dict[str, str] = {}
    for pattern in spec.patterns:
        for path in sorted(root.glob(pattern)):
            if not path.is_file() or (spec.exclude and re.search(spec.exclude, path.name)):
                continue
            rel = path.relative_to(root).as_posix()
            stratum = path.parent.name if spec.stratify_by_folder else ""
            ids[image_id_of(spec.name, rel)] = stratum
    return ids


def _assign(spec: RealSource, ids: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    if spec.eval_only:
        out["test"] = sorted(ids)
        return out
    strata: dict[str, dict[str, list[str]]] = {}
    for image_id, stratum in ids.items():
        strata.setdefault(stratum, {}).setdefault(_group(spec, image_id), []).append(image_id)
    for stratum in sorted(strata):
        groups = strata[stratum]
        order = sorted(groups, key=lambda g: (_unit(f"{spec.name}:{stratum}:{g}"), g))
        n = len(order)
        n_test = _round_half_up(TEST_FRACTION * n)
        if n >= 2 and n_test == 0:
            n_test = 1  # every source with two or more images is tested on something
        n_val = _round_half_up(VAL_FRACTION * n) if n - n_test >= 2 else 0
        for index, group in enumerate(order):
            split = "test" if index < n_test else "val" if index < n_test + n_val else "train"
            out[split] += groups[group]
    return {s: sorted(v) for s, v in out.items()}


def generate(samples: str | Path) -> dict[str, Any]:
    """The split file's content for the real datasets found under ``samples`` (deterministic)."""
    samples = Path(samples)
    if not samples.is_dir():
        raise SplitError(f"--samples {samples} is not a folder; pass the rs-samples folder")
    sources: dict[str, Any] = {}
    for spec in SOURCES:
        ids = _list_ids(samples, spec)
        if not ids:
            continue
        assigned = _assign(spec, ids)
        sources[spec.name] = {
            "folder": spec.folder,
            "eval_only": spec.eval_only,
            "stratified_by": "class folder" if spec.stratify_by_folder else None,
            "counts": {s: len(v) for s, v in assigned.items()},
            "ids": assigned,
        }
    if not sources:
        raise SplitError(
            f"no real dataset found under {samples}; pass the rs-samples folder "
            f"(it holds {', '.join(s.folder for s in SOURCES)})"
        )
    return {
        "format": 1,
        "seed": SEED,
        "fractions": {"test": TEST_FRACTION, "val": VAL_FRACTION},
        "rule_for_unlisted_ids": (
            "sha256('<seed>:<source>:<group>') -> u in [0, 1): test below 0.2, val below 0.3, "
            "train otherwise; test for eval-only sources"
        ),
        "regenerate": REGENERATE,
        "sources": sources,
    }


def write_split_file(content: Mapping[str, Any], out: str | Path) -> Path:
    """Write ``content`` to ``out`` atomically (a temporary file renamed over it)."""
    from geoassist.atomic import replace_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_file(out, json.dumps(content, indent=1, sort_keys=False) + "\n")
    _load.cache_clear()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m geoassist.splits",
        description="Regenerate the real-data split file (image ids only) from an rs-samples folder.",
    )
    parser.add_argument("--samples", type=Path, required=True, help="the rs-samples folder")
    parser.add_argument("--out", type=Path, default=SPLIT_FILE, help=f"(default {SPLIT_FILE})")
    args = parser.parse_args(argv)
    try:
        content = generate(args.samples)
    except SplitError as exc:
        parser.exit(2, f"error: {exc}\n")
    write_split_file(content, args.out)
    for name, entry in content["sources"].items():
        counts = ", ".join(f"{s} {n}" for s, n in entry["counts"].items())
        print(f"{name}: {counts}" + (" (evaluation only)" if entry["eval_only"] else ""))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = [
    "SOURCES",
    "SPLIT_FILE",
    "SplitError",
    "filter_records",
    "generate",
    "has_real_split",
    "image_id_of",
    "real_split",
    "record_image_id",
    "record_split",
    "split_ids",
    "write_split_file",
]
