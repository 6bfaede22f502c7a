"""``knowledge_qa``: grounded question answering over a knowledge corpus, so the model learns to use the context block.

The records come from :func:`geoassist.rag.knowledge_qa_records`; this recipe picks the
entries, splits them and writes the records like any other recipe, so ``geoassist train``
mixes them in by path.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..core import (
    Context,
    DatasetNotFoundError,
    Outcome,
    Recipe,
    RecipeError,
    RecipeInfo,
    register,
    split_filter,
)

DEFAULT_SRC = "default"
SPLITS = ("train", "val", "test")
OPTIONS: dict[str, Any] = {
    "k": 4,
    "per_entry": 1,
    "unanswerable_every": 8,
    "planted_every": 10,
    "seed": 0,
    "val_fraction": 0.1,
    "test_fraction": 0.1,
}


def parse_options(options: dict[str, Any]) -> dict[str, Any]:
    """The recipe options with defaults filled in; unknown keys and bad values raise :class:`RecipeError`."""
    from geoassist.rag.qa import QUESTION_TEMPLATES

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise RecipeError(
            f"knowledge_qa has no option(s) {unknown}; its options are {list(OPTIONS)}"
        )
    values = {**OPTIONS, **options}
    for key in ("k", "per_entry", "unanswerable_every", "planted_every", "seed"):
        if not isinstance(values[key], int) or isinstance(values[key], bool):
            raise RecipeError(f"knowledge_qa option {key} is an integer, got {values[key]!r}")
    if values["k"] < 1:
        raise RecipeError(
            f"knowledge_qa option k (passages per prompt) must be >= 1, got {values['k']}"
        )
    if not 1 <= values["per_entry"] <= len(QUESTION_TEMPLATES):
        raise RecipeError(
            f"knowledge_qa option per_entry (questions per entry) must be 1..{len(QUESTION_TEMPLATES)}, "
            f"got {values['per_entry']}"
        )
    for key in ("unanswerable_every", "planted_every"):
        if values[key] < 0:
            raise RecipeError(
                f"knowledge_qa option {key} must be >= 0 (0 turns it off), got {values[key]}"
            )
    for key in ("val_fraction", "test_fraction"):
        value = values[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise RecipeError(f"knowledge_qa option {key} is a fraction in [0, 1), got {value!r}")
    if values["val_fraction"] + values["test_fraction"] >= 1:
        raise RecipeError(
            "knowledge_qa options val_fraction + test_fraction must be below 1 so train keeps entries"
        )
    return values


def entry_split(doc_id: str, val_fraction: float, test_fraction: float) -> str:
    """The split of a document, from a hash of its id alone (the seed and the other entries do not move it)."""
    digest = hashlib.sha256(f"knowledge_qa:{doc_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


@lru_cache(maxsize=2)
def _load(src: str, stamp: float) -> Any:
    """The store at ``src`` (opened with the embedder it was built with), or the corpus's entries."""
    from geoassist.rag.corpus import load_corpus
    from geoassist.rag.store import KnowledgeStore, is_store

    if is_store(src):
        return KnowledgeStore.open(src)
    return load_corpus(Path(src))


def load_source(src: Path) -> Any:
    """A :class:`~geoassist.rag.store.KnowledgeStore` for a store folder, else the list of corpus entries."""
    from geoassist.rag.errors import KnowledgeStoreError

    manifest = src / "manifest.json"
    stamp = (
        manifest.stat().st_mtime
        if manifest.is_file()
        else max((p.stat().st_mtime for p in src.glob("*.jsonl")), default=0.0)
    )
    try:
        return _load(str(src), stamp)
    except KnowledgeStoreError as exc:  # a bad corpus line or a damaged store: say which, and stop
        raise RecipeError(f"knowledge_qa cannot read {src}: {exc}") from exc


@register
class KnowledgeQA(Recipe):
    """Grounded QA records from a knowledge corpus or store: answer from the right passage and cite it.

    ``--src`` is ``default`` (the bundled corpus, ``geoassist/rag/corpus/``), a corpus folder
    of the same format (``*.jsonl`` lines ``{id, title, text, source, url, licence}``), or a
    store folder made by ``geoassist kb build``. The user turn is exactly what the assistant
    sends with a store attached (a context block of ``k`` passages); the assistant turn
    answers from the passage that answers and ends with its ``[id]``. ``qtype`` says which
    behaviour a record teaches: ``answerable``, ``unanswerable`` (every
    ``unanswerable_every``-th record: the answering passage is left out and the answer says
    so) or ``planted`` (every ``planted_every``-th: a distractor carries an instruction that
    the answer ignores). Distractors are the store's nearest neighbours of the question, or
    random entries of a corpus.

    Splits are made by document (``doc_id``, the entry id for a corpus) from a hash of the id,
    so they do not move with ``seed``: ``test_fraction`` (0.1) of the documents go to test,
    ``val_fraction`` (0.1) to val, the rest to train. A split's prompts hold passages of that
    split and of train only, so no val or test passage ever appears in a train record.
    Options: ``k`` (4), ``per_entry`` (questions per entry, 1), ``unanswerable_every`` (8),
    ``planted_every`` (10), ``seed`` (0), ``val_fraction``, ``test_fraction``. ``meta`` holds
    the question, the answer and context ids and the licences of the passages shown.
    """

    info = RecipeInfo(
        name="knowledge_qa",
        title="GeoAssist knowledge corpus (grounded QA)",
        tasks=("knowledge_qa",),
        licence=(
            "the corpus's own: Apache-2.0 for the bundled corpus (written by GeoAssist); "
            "a corpus folder or store keeps its entries' licences (each record's meta.licences)"
        ),
        citation=(
            "GeoAssist contributors. The GeoAssist knowledge corpus (geoassist/rag/corpus); "
            "every entry names the publication its facts come from (source, url)."
        ),
        layout=(
            "'default' (the bundled corpus), a corpus folder of *.jsonl entries "
            "{id, title, text, source, url, licence}, or a store folder made by `geoassist kb build`"
        ),
        splits=SPLITS,
        checked_against="geoassist.rag.load_corpus and KnowledgeStore.open",
    )

    def resolve_src(self, src: str | os.PathLike) -> Path:
        from geoassist.rag.corpus import CORPUS_DIR

        if str(src) == DEFAULT_SRC and not Path(DEFAULT_SRC).exists():
            return CORPUS_DIR
        return super().resolve_src(src)

    def check(self, src: Path) -> None:
        from geoassist.rag.store import is_store

        if not src.is_dir():
            raise DatasetNotFoundError(
                f"{src} is not a folder; --src is 'default' (the bundled corpus), a corpus folder "
                "of *.jsonl entries or a store made by `geoassist kb build`"
            )
        if not is_store(src) and not any(src.glob("*.jsonl")):
            raise DatasetNotFoundError(
                f"{src} holds neither a knowledge store (manifest.json) nor corpus files (*.jsonl); "
                "use --src default, a corpus folder, or build a store with `geoassist kb build`"
            )

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        parse_options(options)
        for split in split_filter(splits, list(SPLITS), self.info.name):
            yield {"id": split, "split": split}

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        from geoassist.rag.qa import knowledge_qa_records

        opts = parse_options(ctx.options)
        source = load_source(ctx.src)
        entries = [e for e in source if not e.is_image]
        split_of = {
            e.id: entry_split(e.doc_id, opts["val_fraction"], opts["test_fraction"])
            for e in entries
        }
        split = item["split"]
        asked = [e.id for e in entries if split_of[e.id] == split]
        if not asked:
            return []
        visible = {i for i, s in split_of.items() if s in ("train", split)}
        licences = {e.id: e.licence for e in entries}
        records = knowledge_qa_records(
            source,
            k=opts["k"],
            per_entry=opts["per_entry"],
            unanswerable_every=opts["unanswerable_every"],
            planted_every=opts["planted_every"],
            split=split,
            seed=opts["seed"],
            source_name=self.info.name,
            ask_ids=asked,
            distractor_ids=visible,
        )
        for record in records:
            shown = record["meta"]["context_ids"]
            record["meta"]["licences"] = sorted({licences[i] for i in shown if licences.get(i)})
        return records
