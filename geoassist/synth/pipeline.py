"""Generates N samples and writes them through the chosen exporters (optionally in worker processes)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.synth.encode import Encoded
from geoassist.synth.exporters import make_exporters
from geoassist.synth.types import Pair, Scene, SynthError

log = logging.getLogger(__name__)
KINDS = ("hr", "ms", "pair", "series")


def sample_seed(seed: int, index: int) -> int:
    return int(np.random.default_rng([seed, index]).integers(2**31 - 1))


def make_sample(kind: str, seed: int, size: int, nir: bool = False) -> Scene | Pair:
    if kind == "hr":
        from geoassist.synth.hr import generate_hr

        return generate_hr(seed, size=size, nir=nir)[0]
    if kind == "ms":
        from geoassist.synth.ms import generate_ms

        return generate_ms(seed, size=size)[0]
    if kind in ("pair", "series"):
        from geoassist.synth.change import generate_series

        return generate_series(seed, 2 if kind == "pair" else 4, size=size)
    raise SynthError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")


def _work(job: tuple[str, int, int, bool, bool, frozenset[str]]) -> Encoded:
    kind, seed, size, nir, georef, keys = job
    return Encoded(make_sample(kind, seed, size, nir), georef).prepare(set(keys))


def _init_worker() -> None:
    from geoassist.synth.noise import warm_up

    warm_up()


def ordered_map(func: Callable[[Any], Any], jobs: list, workers: int = 1, chunksize: int = 1) -> Iterator[Any]:
    """``func`` over ``jobs`` in order, in this process or in a pool of ``workers`` whose noise
    tables are warmed up once each (the results are the same with any number of workers)."""
    if workers <= 1:
        for j in jobs:
            yield func(j)
        return
    import multiprocessing as mp

    ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        yield from pool.imap(func, jobs, chunksize=chunksize)


def iter_samples(kind: str, n: int, seed: int, size: int, keys: set[str], workers: int = 1, nir: bool = False, georef: bool = False, start: int = 0) -> Iterator[Encoded]:
    """Encoded samples in index order (the same with any number of workers)."""
    jobs = [(kind, sample_seed(seed, i), size, nir, georef, frozenset(keys)) for i in range(start, start + n)]
    yield from ordered_map(_work, jobs, workers, chunksize=4)


def generate_dataset(out: str | Path, n: int, seed: int = 0, kind: str = "hr", formats: list[str] | None = None, split: str = "train", size: int | None = None, georef: bool = False, workers: int = 1, nir: bool = False, preview: bool = False, progress: bool = True) -> dict[str, int]:
    """Writes ``n`` samples to ``out/<format>/`` for each format; returns counts written per format."""
    if kind not in KINDS:
        raise SynthError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    if n < 1:
        raise SynthError("--n must be at least 1")
    formats = list(formats or [])
    if georef and "geotiff" not in formats and kind in ("hr", "ms"):
        formats.append("geotiff")
    size = size or {"hr": 512, "ms": 256, "pair": 256, "series": 256}[kind]
    out = Path(out)
    exporters = make_exporters(out, formats, split, kind)
    keys: set[str] = set()
    for e in exporters:
        keys |= e.needs()
    shown: list[Scene | Pair] = []
    try:
        from tqdm import tqdm

        it = tqdm(iter_samples(kind, n, seed, size, keys, workers, nir, georef), total=n, unit="scene", disable=n < 50 or not progress)
    except ImportError:  # pragma: no cover
        it = iter_samples(kind, n, seed, size, keys, workers, nir, georef)
    for i, enc in enumerate(it):
        for e in exporters:
            e.add(i, enc.sample, enc)
        if preview and len(shown) < 12:
            shown.append(enc.sample)
    for e in exporters:
        e.close()
    if preview:
        from geoassist.synth.preview import contact_sheet

        contact_sheet(shown, out / "preview.png")
    return {e.name: n for e in exporters}
