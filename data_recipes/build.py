"""Running a recipe: stream its records into Parquet shards, count everything, publish atomically.

The output folder holds ``data/<split>-<n>.parquet`` shards (rows made by :func:`schema.to_row`),
``rejected.jsonl`` (every record not written and every part left out, with its reason) and
``manifest.json``. It is written in a hidden temporary folder beside ``out`` and renamed into
place only when complete, so a half-written output never looks like a finished one. Records
are streamed: memory holds one row group per split, never the whole dataset or its images.
With ``workers > 1`` items are converted by ``datasets.Dataset.map(num_proc=…)``; the writer
sees the outcomes in the same order either way, so the bytes written do not depend on it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from geoassist import __version__
from geoassist.atomic import make_temp_dir, replace_folder
from geoassist.errors import GeoAssistError

from .core import Context, Dropped, RecipeError, Reject, get_recipe
from .schema import RecordError, to_row, validate_record

logger = logging.getLogger(__name__)

FORMAT = "geoassist-records/1"
MANIFEST = "manifest.json"
REJECTED = "rejected.jsonl"
DATA_DIR = "data"
ROW_GROUP = 1000
SHARD_ROWS = 50_000

ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("task", pa.string()),
        ("images", pa.list_(pa.string())),
        ("conversations", pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))),
        ("answer", pa.string()),
        ("answer_is_list", pa.bool_()),
        ("qtype", pa.string()),
        ("targets", pa.string()),
        ("meta", pa.string()),
    ]
)


class _SplitShards:
    """Row groups of one split, rolled over into a new shard file every ``shard_rows`` rows."""

    def __init__(self, folder: Path, split: str, shard_rows: int):
        self.folder, self.split, self.shard_rows = folder, split, shard_rows
        self.rows: list[dict[str, Any]] = []
        self.writer: pq.ParquetWriter | None = None
        self.in_shard = 0
        self.shards: list[dict[str, Any]] = []

    def _safe_split(self) -> str:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in self.split) or "unsplit"

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= ROW_GROUP or self.in_shard + len(self.rows) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        if self.writer is None:
            name = f"{self._safe_split()}-{len(self.shards):05d}.parquet"
            path = self.folder / name
            self.writer = pq.ParquetWriter(path, ROW_SCHEMA, compression="zstd")
            self.shards.append({"path": f"{DATA_DIR}/{name}", "split": self.split, "rows": 0})
        self.writer.write_table(
            pa.Table.from_pylist(self.rows, schema=ROW_SCHEMA), row_group_size=ROW_GROUP
        )
        self.shards[-1]["rows"] += len(self.rows)
        self.in_shard += len(self.rows)
        self.rows = []
        if self.in_shard >= self.shard_rows:
            self._close_writer()

    def _close_writer(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
            self.in_shard = 0

    def close(self) -> list[dict[str, Any]]:
        self.flush()
        self._close_writer()
        return self.shards


class RecordWriter:
    """Counts outcomes and writes records, rejects and the manifest into one folder."""

    def __init__(self, folder: Path, shard_rows: int = SHARD_ROWS):
        self.folder = folder
        (folder / DATA_DIR).mkdir(parents=True, exist_ok=True)
        self.shard_rows = shard_rows
        self.splits: dict[str, _SplitShards] = {}
        self.log = open(folder / REJECTED, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        self.ids: set[str] = set()
        self.written = 0
        self.rejected: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.by_split: Counter[str] = Counter()
        self.by_task: Counter[str] = Counter()
        self.by_qtype: Counter[str] = Counter()
        self.by_split_task: dict[str, Counter[str]] = {}

    def add_record(self, record: dict[str, Any]) -> None:
        try:
            validate_record(record)
        except RecordError as exc:
            return self.add_reject(Reject(str(record.get("id", "?")), "invalid record", str(exc)))
        if record["id"] in self.ids:
            return self.add_reject(
                Reject(record["id"], "duplicate id", "a record with this id was already written")
            )
        self.ids.add(record["id"])
        self.add_row(to_row(record))

    def add_row(self, row: dict[str, Any]) -> None:
        split = row["split"]
        if split not in self.splits:
            self.splits[split] = _SplitShards(self.folder / DATA_DIR, split, self.shard_rows)
        self.splits[split].add(row)
        self.written += 1
        self.by_split[split] += 1
        self.by_task[row["task"]] += 1
        self.by_split_task.setdefault(split, Counter())[row["task"]] += 1
        if row.get("qtype"):
            self.by_qtype[row["qtype"]] += 1

    def add_reject(self, reject: Reject) -> None:
        self.rejected[reject.reason] += 1
        self._log("rejected", reject)

    def add_dropped(self, dropped: Dropped) -> None:
        self.dropped[dropped.reason] += 1
        self._log("dropped", dropped)

    def _log(self, kind: str, outcome: Reject | Dropped) -> None:
        entry = {"kind": kind, "id": outcome.id, "reason": outcome.reason, "detail": outcome.detail}
        self.log.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")

    def add(self, outcome: Any) -> None:
        if isinstance(outcome, Reject):
            self.add_reject(outcome)
        elif isinstance(outcome, Dropped):
            self.add_dropped(outcome)
        else:
            self.add_record(outcome)

    def close(self, header: dict[str, Any]) -> dict[str, Any]:
        self.log.close()
        shards = []
        for split in sorted(self.splits):
            shards += self.splits[split].close()
        digest = hashlib.sha256()
        for shard in shards:
            shard["sha256"] = _file_sha256(self.folder / shard["path"])
            digest.update(f"{shard['path']}\x00{shard['sha256']}\n".encode())
        rejected_total = sum(self.rejected.values())
        manifest = {
            "format": FORMAT,
            **header,
            "read": self.written + rejected_total,
            "written": self.written,
            "rejected": dict(sorted(self.rejected.items())),
            "rejected_total": rejected_total,
            "dropped": dict(sorted(self.dropped.items())),
            "by_split": dict(sorted(self.by_split.items())),
            "by_task": dict(sorted(self.by_task.items())),
            "by_qtype": dict(sorted(self.by_qtype.items())),
            "by_split_task": {
                s: dict(sorted(c.items())) for s, c in sorted(self.by_split_task.items())
            },
            "shards": shards,
            "sha256": digest.hexdigest(),
            "geoassist_version": __version__,
        }
        (self.folder / MANIFEST).write_text(
            json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        return manifest


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- outcomes, in order


def iter_outcomes(
    recipe_name: str, src: Path, ctx: Context, splits: Sequence[str] | None
) -> Iterator[Any]:
    """Every outcome of a recipe over ``src``, one item at a time (the in-process path).

    ``Recipe.items`` may yield a :class:`Reject` for a source record it could not read (a
    question without ``id``): it is counted like any other rejection, in the same place.
    """
    recipe = get_recipe(recipe_name)
    for item in recipe.items(src, splits, ctx.options):
        if isinstance(item, Reject):
            yield item
        else:
            yield from _convert_safely(recipe_name, item, ctx)


def _convert_safely(recipe_name: str, item: dict[str, Any], ctx: Context) -> Iterable[Any]:
    recipe = get_recipe(recipe_name)
    try:
        return list(recipe.convert(item, ctx))
    except RecordError as exc:
        return [Reject(f"{recipe_name}:{item.get('id', '?')}", "invalid record", str(exc))]
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        # Bad input inside one item must not stop a long build; it is counted and logged.
        logger.warning(
            "%s: item %s could not be converted: %s", recipe_name, item.get("id", "?"), exc
        )
        return [
            Reject(
                f"{recipe_name}:{item.get('id', '?')}",
                "malformed annotation",
                f"{type(exc).__name__}: {exc}"[:500],
            )
        ]


def _encode(outcome: Any) -> str:
    if isinstance(outcome, Reject):
        return json.dumps(
            {"k": "r", "id": outcome.id, "reason": outcome.reason, "detail": outcome.detail}
        )
    if isinstance(outcome, Dropped):
        return json.dumps(
            {"k": "d", "id": outcome.id, "reason": outcome.reason, "detail": outcome.detail}
        )
    return json.dumps({"k": "x", "record": outcome}, ensure_ascii=False)


def _decode(text: str) -> Any:
    data = json.loads(text)
    if data["k"] == "r":
        return Reject(data["id"], data["reason"], data["detail"])
    if data["k"] == "d":
        return Dropped(data["id"], data["reason"], data["detail"])
    return data["record"]


def _convert_batch(
    batch: dict[str, list], recipe_name: str, src: str, out: str | None, options: dict[str, Any]
) -> dict[str, list]:
    ctx = _worker_context(src, out, options)
    encoded: list[str] = []
    for text in batch["item"]:
        item = json.loads(text)
        if _READ_REJECT in item:  # rejected while reading: passed through in order
            encoded.append(json.dumps(item[_READ_REJECT]))
            continue
        encoded += [_encode(o) for o in _convert_safely(recipe_name, item, ctx)]
    return {"outcome": encoded}


_WORKER_CTX: dict[tuple, Context] = {}
_READ_REJECT = "__rejected_while_reading__"


def _worker_context(src: str, out: str | None, options: dict[str, Any]) -> Context:
    key = (src, out, json.dumps(options, sort_keys=True, default=str))
    if key not in _WORKER_CTX:
        _WORKER_CTX.clear()
        _WORKER_CTX[key] = Context(Path(src), Path(out) if out else None, dict(options))
    return _WORKER_CTX[key]


def _item_generator(
    recipe_name: str, src: str, splits: list[str] | None, options: dict[str, Any]
) -> Iterator[dict[str, str]]:
    for item in get_recipe(recipe_name).items(Path(src), splits, options):
        if isinstance(item, Reject):
            yield {"item": json.dumps({_READ_REJECT: json.loads(_encode(item))})}
        else:
            yield {"item": json.dumps(item, sort_keys=True)}


def _our_error(exc: BaseException) -> GeoAssistError | None:
    """The first :class:`GeoAssistError` in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, GeoAssistError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _parallel_outcomes(
    recipe_name: str,
    src: Path,
    ctx: Context,
    splits: Sequence[str] | None,
    workers: int,
    scratch: Path,
) -> Iterator[Any]:
    import datasets

    features = datasets.Features({"item": datasets.Value("string")})
    was_enabled = datasets.is_progress_bar_enabled()
    if not logger.isEnabledFor(logging.INFO):
        datasets.disable_progress_bars()
    try:
        try:
            items = datasets.Dataset.from_generator(
                _item_generator,
                gen_kwargs={
                    "recipe_name": recipe_name,
                    "src": str(src),
                    "splits": list(splits) if splits else None,
                    "options": ctx.options,
                },
                features=features,
                cache_dir=str(scratch / "items"),
            )
        except Exception as exc:
            # datasets wraps what the generator raised; a file the recipe cannot read is the
            # recipe's own clear error, not datasets' wrapper.
            raise _our_error(exc) or exc from None
        if len(items) == 0:
            return
        converted = items.map(
            _convert_batch,
            batched=True,
            batch_size=8,
            num_proc=min(workers, len(items)),
            remove_columns=["item"],
            features=datasets.Features({"outcome": datasets.Value("string")}),
            fn_kwargs={
                "recipe_name": recipe_name,
                "src": str(src),
                "out": str(ctx.out) if ctx.out else None,
                "options": ctx.options,
            },
            cache_file_name=str(scratch / "outcomes.arrow"),
            load_from_cache_file=False,
            desc=f"{recipe_name}: converting",
        )
        for batch in converted.iter(batch_size=1000):
            for text in batch["outcome"]:
                yield _decode(text)
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


# --------------------------------------------------------------------------- build


def _is_our_output(folder: Path) -> bool:
    try:
        return json.loads((folder / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def build(
    recipe: str,
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    splits: list[str] | None = None,
    workers: int = 1,
    options: dict[str, Any] | None = None,
    shard_rows: int = SHARD_ROWS,
) -> dict[str, Any]:
    """Run ``recipe`` on the dataset at ``src`` and write its records to ``out``; returns the manifest.

    ``out`` must not exist, be empty, or hold an earlier recipe output (which is replaced only
    once the new one is complete). ``options`` are recipe-specific (see ``geoassist data list``).
    """
    from .core import split_filter

    r = get_recipe(recipe)
    name = r.info.name
    src_path = r.resolve_src(src)
    r.check(src_path)
    chosen = (
        split_filter(splits, r.available_splits(src_path), name) if splits is not None else None
    )
    out_path = Path(out).expanduser().resolve()
    if out_path.exists() and not (
        out_path.is_dir() and (not any(out_path.iterdir()) or _is_our_output(out_path))
    ):
        raise RecipeError(
            f"{out_path} exists and is not a recipe output; choose an empty or new folder for --out"
        )
    if workers < 1:
        raise RecipeError(f"workers must be >= 1, got {workers}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # make_temp_dir first removes what a killed build of this output left beside it.
    tmp = make_temp_dir(out_path)
    scratch = make_temp_dir(out_path, "scratch")
    options = dict(options or {})
    try:
        ctx = Context(src_path, tmp, options)
        writer = RecordWriter(tmp, shard_rows=shard_rows)
        if workers == 1:
            outcomes = iter_outcomes(name, src_path, ctx, chosen)
        else:
            outcomes = _parallel_outcomes(name, src_path, ctx, chosen, workers, scratch)
        for outcome in _progress(outcomes, name):
            writer.add(outcome)
        header = {
            "recipe": name,
            "source": name,
            "title": r.info.title,
            "licence": r.info.licence,
            "citation": r.info.citation,
            "src": str(src_path),
            "image_root": "." if r.info.writes_files else str(src_path),
            "splits": chosen if chosen is not None else r.available_splits(src_path),
            "options": {k: options[k] for k in sorted(options)},
            "eval_only": r.info.eval_only,
        }
        manifest = writer.close(header)
        _publish(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    logger.info(
        "%s: %d records written, %d rejected -> %s",
        name,
        manifest["written"],
        manifest["rejected_total"],
        out_path,
    )
    return manifest


def _publish(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``, replacing an earlier output only now."""
    replace_folder(tmp, out)


def _progress(outcomes: Iterable[Any], name: str) -> Iterable[Any]:
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return outcomes
    return tqdm(outcomes, desc=f"{name}", unit=" outcomes", disable=None, leave=False)
