"""`geoassist kb`: build, extend, search and describe knowledge stores.

    geoassist kb build --src DIR [--src DIR…] --out KB     a new store from documents (--force replaces one)
    geoassist kb build --default                           build (or refresh) the cached default store
    geoassist kb add KB PATH…                              add files or folders (--replace updates them)
    geoassist kb delete KB ID…                             remove entries or whole documents
    geoassist kb search KB "query" [--image IMG] --k 5 [--json]
    geoassist kb info KB [--json]

``KB`` is a store folder or ``default`` (the bundled corpus, built on first use).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from geoassist.errors import GeoAssistError


def register(subparsers) -> None:
    kb = subparsers.add_parser(
        "kb",
        help="knowledge stores: build, add, delete, search, info",
        description="Knowledge stores that ground answers in retrieved, cited facts. "
        "KB is a store folder or 'default' (the bundled corpus, built on first use).",
    )
    commands = kb.add_subparsers(dest="kb_command", metavar="ACTION")
    kb.set_defaults(func=_usage(kb))

    p = commands.add_parser(
        "build", help="build a store from documents (Markdown, text, JSONL, PDF, captioned images)"
    )
    p.add_argument(
        "--src",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder or file to read (repeatable)",
    )
    p.add_argument(
        "--out",
        metavar="KB",
        help="the store folder to write: new or empty (an existing store is refused; "
        "`kb add` adds to it, --force replaces it)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the store already in --out (its entries are dropped, even when the new "
        "store is smaller)",
    )
    p.add_argument(
        "--default",
        action="store_true",
        help="build the default store from the bundled corpus into the cache",
    )
    _embedding_options(p)
    p.add_argument(
        "--index",
        choices=["auto", "flat", "ivf", "hnsw"],
        default="auto",
        help="FAISS index (default auto: exact below 20k vectors, IVF above)",
    )
    p.add_argument(
        "--chunk-chars", type=int, default=1000, help="largest chunk, in characters (default 1000)"
    )
    p.add_argument(
        "--overlap-chars",
        type=int,
        default=150,
        help="text carried into the next chunk (default 150)",
    )
    p.add_argument(
        "--with-corpus", action="store_true", help="include the bundled corpus in the new store"
    )
    p.set_defaults(func=run_build)

    p = commands.add_parser(
        "add", help="add files or folders to a store (--replace updates documents already there)"
    )
    p.add_argument("kb", metavar="KB")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument(
        "--replace",
        action="store_true",
        help="replace documents whose ids are already in the store",
    )
    p.add_argument(
        "--image-model",
        help="model whose vision tower embeds image entries (default: the store's own)",
    )
    p.add_argument("--chunk-chars", type=int, default=1000)
    p.add_argument("--overlap-chars", type=int, default=150)
    p.set_defaults(func=run_add)

    p = commands.add_parser("delete", help="remove entries (or whole documents) by id")
    p.add_argument("kb", metavar="KB")
    p.add_argument("ids", nargs="+", metavar="ID")
    p.set_defaults(func=run_delete)

    p = commands.add_parser("search", help="the entries nearest to a question (and/or an image)")
    p.add_argument("kb", metavar="KB")
    p.add_argument(
        "query", nargs="?", default="", help="the question ('-' reads stdin, @FILE a file)"
    )
    p.add_argument(
        "--image", metavar="IMG", help="search by this image too (the store needs an image index)"
    )
    p.add_argument(
        "--model",
        help="model whose vision tower embeds --image (default: the one the store was built with)",
    )
    p.add_argument("--k", type=int, default=5, help="how many results (default 5)")
    p.add_argument(
        "--json",
        action="store_true",
        help='print a JSON list of {"id", "title", "text", "source", "score"}',
    )
    p.set_defaults(func=run_search)

    p = commands.add_parser("info", help="what a store holds: counts, embedders, index kinds")
    p.add_argument("kb", metavar="KB")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run_info)


def _usage(parser: argparse.ArgumentParser):
    def run(args) -> int:
        parser.print_help()
        return 2

    return run


def _embedding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--embedder",
        default="minilm",
        help="text embedder: minilm (bundled all-MiniLM-L6-v2), a sentence-transformers folder or hub id",
    )
    p.add_argument(
        "--image-model", help="model (preset, folder, name) whose vision tower embeds image entries"
    )


def _quiet() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _image_embedder(model_name: str | None):
    if not model_name:
        return None
    from geoassist.checkpoint import create_model
    from geoassist.rag.embedders import VisionTowerEmbedder

    return VisionTowerEmbedder(create_model(model_name), load=model_name)


def _open(spec: str, **kwargs):
    from geoassist.rag.corpus import open_store

    return open_store(spec, **kwargs)


def _report_skipped(report) -> None:
    for path, reason in report.skipped:
        print(f"  skipped {path}: {reason}")


def run_build(args) -> int:
    from geoassist.rag.corpus import load_corpus, open_default
    from geoassist.rag.embedders import text_embedder
    from geoassist.rag.ingest import Reader
    from geoassist.rag.store import KnowledgeStore

    _quiet()
    if args.default:
        if args.src or args.out:
            raise GeoAssistError(
                "--default builds the bundled store into the cache; drop --src/--out"
            )
        start = time.perf_counter()
        store = open_default(rebuild=True, show_progress=True)
        seconds = time.perf_counter() - start
        print(
            f"built the default store: {len(store)} entries in {seconds:.1f} s ({len(store) / seconds:.0f} chunks/s) at {store.path}"
        )
        return 0
    if not args.src or not args.out:
        raise GeoAssistError("kb build needs --src DIR (one or more) and --out KB (or --default)")
    replaced = _check_build_target(Path(args.out).expanduser(), force=args.force)
    store = KnowledgeStore(
        text_embedder(args.embedder),
        image_embedder=_image_embedder(args.image_model),
        index=args.index,
    )
    reader = Reader(args.chunk_chars, args.overlap_chars)
    entries = list(load_corpus()) if args.with_corpus else []
    for src in args.src:
        entries.extend(reader.read(src))
    if not entries:
        _report_skipped(reader.report)
        raise GeoAssistError(
            f"no documents found under {', '.join(args.src)} (read: .md .txt .jsonl .pdf and captioned images)"
        )
    start = time.perf_counter()
    store.add(entries, show_progress=True)
    store.info = {
        "sources": [str(s) for s in args.src],
        "chunk_chars": args.chunk_chars,
        "overlap_chars": args.overlap_chars,
    }
    store.save(args.out, overwrite=args.force)
    seconds = time.perf_counter() - start
    print(
        f"built {args.out}: {len(store)} entries from {reader.report.files} files in {seconds:.1f} s "
        f"({len(store) / max(seconds, 1e-9):.0f} chunks/s); index {store.describe()['spaces']['text']['index']['kind']}"
    )
    if replaced is not None:
        print(f"replaced the store that was there ({_entries(replaced)} -> {len(store)})")
    _report_skipped(reader.report)
    return 0


def _entries(count: int) -> str:
    return f"{count} {'entry' if count == 1 else 'entries'}"


def _check_build_target(out: Path, *, force: bool) -> int | None:
    """Refuse an --out that would lose data, before any embedding work; returns the entry
    count of a store that --force will replace (None when there is none)."""
    from geoassist.rag.store import is_store, stored_count

    if out.exists() and not out.is_dir():
        raise GeoAssistError(f"--out {out} is a file; give a folder for the store")
    if is_store(out):
        count = stored_count(out)
        if not force:
            held = "an unreadable manifest" if count is None else _entries(count)
            raise GeoAssistError(
                f"{out} already holds a knowledge store ({held}); `geoassist kb add {out} PATH…` "
                "adds documents to it, --force replaces it, or pick a new --out folder"
            )
        return count if count is not None else 0
    if out.is_dir() and any(out.iterdir()):
        raise GeoAssistError(
            f"{out} is not empty and holds no knowledge store; pick a new or empty --out folder"
        )
    return None


def run_add(args) -> int:
    from geoassist.rag.corpus import DEFAULT_NAME
    from geoassist.rag.ingest import Reader

    _quiet()
    if args.kb == DEFAULT_NAME:
        raise GeoAssistError(
            "the default store is rebuilt from the bundled corpus; build your own (`kb build --with-corpus`) to add to it"
        )
    store = _open(args.kb)
    embedder = _image_embedder(args.image_model)
    if embedder is not None:
        store.use_embedder(embedder)
    reader = Reader(args.chunk_chars, args.overlap_chars)
    entries = [e for path in args.paths for e in reader.read(path)]
    if args.replace:
        added = store.update(entries, show_progress=True)
    else:
        added = store.add(entries, show_progress=True)
    store.save()
    print(f"added {added} entries to {args.kb} ({len(store)} in all)")
    _report_skipped(reader.report)
    return 0


def run_delete(args) -> int:
    from geoassist.rag.corpus import DEFAULT_NAME

    if args.kb == DEFAULT_NAME:
        raise GeoAssistError(
            "the default store is rebuilt from the bundled corpus; build your own to edit it"
        )
    store = _open(args.kb)
    removed = store.delete(args.ids)
    if not removed:
        raise GeoAssistError(
            f"no entry or document with id {', '.join(args.ids)} in {args.kb}; `geoassist kb search` shows ids"
        )
    store.save()
    print(f"removed {len(removed)} entries from {args.kb} ({len(store)} left)")
    return 0


def run_search(args) -> int:
    from geoassist.commands.core import read_prompt

    _quiet()
    query = read_prompt(args.query) if args.query else ""
    if not query and not args.image:
        raise GeoAssistError('give a query ("…", - for stdin, @FILE) or --image IMG')
    if args.k <= 0:
        raise GeoAssistError("--k must be at least 1")
    store = _open(args.kb)
    image_embedder = _image_embedder(args.model)
    hits = store.search(query or None, image=args.image, k=args.k, image_embedder=image_embedder)
    if args.json:
        print(json.dumps([h.to_dict() for h in hits], indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print("no results")
    for hit in hits:
        e = hit.entry
        print(f"{hit.rank}. [{e.id}] {e.title}  (score {hit.score:.3f})")
        if e.source:
            print(f"   source: {e.source}" + (f" <{e.url}>" if e.url else ""))
        text = " ".join(e.text.split())
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


def run_info(args) -> int:
    store = _open(args.kb)
    info = store.describe()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    print(f"store      {info['path']}")
    print(
        f"entries    {info['entries']} ({info['text_entries']} text, {info['image_entries']} image) in {info['documents']} documents"
    )
    for name, space in info["spaces"].items():
        index = space["index"]
        params = ", ".join(
            f"{k}={v}" for k, v in index.items() if k not in ("kind", "reason", "requested")
        )
        print(
            f"{name:<10} {space['vectors']} vectors, {space['dim']}-d, embedder {space['embedder']} ({space['embedder_kind']})"
        )
        print(
            f"{'':<10} index {index['kind']}{' (' + params + ')' if params else ''}: {index.get('reason', '')}"
        )
    print(f"saved      generation {info['generation']}, updated {info['updated']}")
    if info["info"]:
        print(f"about      {json.dumps(info['info'], ensure_ascii=False)}")
    return 0
