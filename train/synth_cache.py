"""A reusable on-disk cache of GeoSynth scenes (or pairs) with their exact truth, for stage 0.

Layout of one cache folder (one generation config)::

    manifest.json          format, GeoSynth version, generation config (kind, size, base seed)
    shard-0000000-0000256/ one shard: samples [start, end) of the config's seed sequence
        meta.json          start, count, GeoSynth version
        images.npy         (n, S, S, 3) uint8   (memory-mapped on read)
        images_b.npy       (n, S, S, 3) uint8   second date (pairs only)
        semantic.npy       (n, S, S) uint8      codes into SEMANTIC_CLASSES (255: unknown)
        change.npy         (n, S, S) bool       (pairs only)
        scene.npy          (n,) int16           GeoSynth scene-class index
        objects.npy        (m, 7) float32       sample, class, cx, cy, w, h, angle°
        captions.json      one caption per sample

Sample ``i`` has seed ``sample_seed(base_seed, i)``, the seed sequence ``geoassist
synth`` uses, so a run that continues with a new range (``start``) gets new seeds and
the shards it already has are reused. Shards are written to a temporary folder and
renamed, so a reader never sees half a shard, and a refill running in the background
can share the folder with training. The GeoSynth version is a hash of the generator's
source: a cache written by another version is refused with a message (or, with
``on_mismatch="regenerate"``, emptied and rebuilt), never mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoassist.errors import GeoAssistError
from geoassist.train.dense_targets import Truth, truth_from_pair, truth_from_scene

log = logging.getLogger(__name__)

CACHE_FORMAT = "geoassist-synth-cache/1"
KINDS = ("scene", "pair")
# Generator modules whose source defines what a seed produces (not exporters, readers or the CLI).
_GENERATOR_MODULES = (
    "types", "plan", "render", "objects", "layouts", "hr", "ms", "change", "noise", "palette", "text",
)


class SynthCacheError(GeoAssistError):
    """A GeoSynth shard cache cannot be used as asked."""


def geosynth_version() -> str:
    """``<geoassist version>+<hash of the generator's source>``: changes whenever a seed could."""
    from geoassist import __version__, synth

    digest = hashlib.sha256()
    folder = Path(synth.__file__).parent
    for name in _GENERATOR_MODULES:
        digest.update(name.encode())
        digest.update((folder / f"{name}.py").read_bytes())
    return f"{__version__}+{digest.hexdigest()[:12]}"


@dataclass(frozen=True)
class CacheConfig:
    kind: str = "scene"  # scene (an HR image) | pair (two dates + change mask)
    size: int = 256
    base_seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SynthCacheError(f"unknown cache kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.size < 96 or self.size % 32:
            raise SynthCacheError(f"cache size must be a multiple of 32 (>= 96), got {self.size}")

    def folder_name(self) -> str:
        return f"{self.kind}-{self.size}px-seed{self.base_seed}"


def _write_json(path: Path, data) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    tmp.replace(path)


def _generate(job: tuple[str, int, int]) -> Truth:
    kind, seed, size = job
    from geoassist.synth.pipeline import make_sample

    try:
        sample = make_sample("pair" if kind == "pair" else "hr", seed, size)
    except ValueError as exc:
        raise SynthCacheError(
            f"GeoSynth could not generate the {kind} of seed {seed} at {size}px ({exc}); "
            "use a larger size or another base seed"
        ) from None
    return truth_from_pair(sample) if kind == "pair" else truth_from_scene(sample)


class SynthCache:
    """One cache folder; :meth:`ensure` fills sample ranges, :meth:`truth` reads one sample."""

    def __init__(self, root: str | Path, config: CacheConfig, on_mismatch: str = "refuse"):
        if on_mismatch not in ("refuse", "regenerate"):
            raise SynthCacheError("on_mismatch is 'refuse' or 'regenerate'")
        self.config = config
        self.folder = Path(root) / config.folder_name()
        self.version = geosynth_version()
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / "manifest.json"
        wanted = {"format": CACHE_FORMAT, "geosynth": self.version, "config": config.__dict__}
        if manifest.is_file():
            found = json.loads(manifest.read_text())
            if found.get("geosynth") != self.version or found.get("format") != CACHE_FORMAT:
                if on_mismatch == "refuse":
                    raise SynthCacheError(
                        f"the GeoSynth cache {self.folder} was written by GeoSynth {found.get('geosynth')} "
                        f"({found.get('format')}), this is {self.version}; its scenes differ for the same "
                        "seeds. Delete the folder, or regenerate it (stage0.synth.on_mismatch: regenerate)"
                    )
                log.warning("GeoSynth cache %s is from version %s: regenerating", self.folder, found.get("geosynth"))
                for shard in self._shard_dirs():
                    shutil.rmtree(shard, ignore_errors=True)
                _write_json(manifest, wanted)
        else:
            _write_json(manifest, wanted)
        self._index: list[tuple[int, int, Path]] | None = None
        self._arrays: dict[Path, dict[str, np.ndarray]] = {}

    def _shard_dirs(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("shard-*") if p.is_dir())

    def shards(self) -> list[tuple[int, int, Path]]:
        """(start, end, folder) of every complete shard of this version, by start."""
        out = []
        for shard in self._shard_dirs():
            try:
                meta = json.loads((shard / "meta.json").read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if meta.get("geosynth") != self.version:
                raise SynthCacheError(
                    f"shard {shard} was written by GeoSynth {meta.get('geosynth')}, the cache by {self.version}; "
                    "delete the shard (it is regenerated on the next fill)"
                )
            out.append((int(meta["start"]), int(meta["start"]) + int(meta["count"]), shard))
        return sorted(out)

    def covered(self, start: int, count: int, shards: list[tuple[int, int, Path]] | None = None) -> bool:
        """Whether every sample of [start, start+count) is in the cache (of ``shards``, when given)."""
        have = set()
        for a, b, _ in self.shards() if shards is None else shards:
            have.update(range(max(a, start), min(b, start + count)))
        return len(have) == count

    def ensure(self, start: int, count: int, workers: int = 1, shard_size: int = 256) -> dict[str, float]:
        """Generate every shard of samples [start, start+count) that is not there yet.

        Returns ``{"generated", "seconds", "scenes_per_s", "bytes"}`` and logs the same.
        """
        from geoassist.synth.pipeline import ordered_map, sample_seed

        starts = range(start - start % shard_size, start + count, shard_size)
        shards = self.shards() if starts else []  # every meta.json of the folder, read once
        todo = [a for a in starts if not self.covered(a, shard_size, shards)]
        t0 = time.perf_counter()
        generated = 0
        for a in todo:
            jobs = [(self.config.kind, sample_seed(self.config.base_seed, i), self.config.size) for i in range(a, a + shard_size)]
            truths = list(ordered_map(_generate, jobs, workers, chunksize=2))
            self._write_shard(a, truths)
            generated += len(truths)
            rate = generated / max(time.perf_counter() - t0, 1e-9)
            log.info("GeoSynth cache %s: shard %d-%d written, %.2f scenes/s", self.folder.name, a, a + shard_size, rate)
        seconds = time.perf_counter() - t0
        self._index = None
        stats = {
            "generated": float(generated),
            "seconds": seconds,
            "scenes_per_s": generated / seconds if generated and seconds > 0 else 0.0,
            "bytes": float(self.size_bytes()),
        }
        log.info(
            "GeoSynth cache %s: %d samples generated in %.1f s (%.2f/s), %.1f MB on disk",
            self.folder, generated, seconds, stats["scenes_per_s"], stats["bytes"] / 1e6,
        )
        return stats

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())

    def _write_shard(self, start: int, truths: list[Truth]) -> Path:
        final = self.folder / f"shard-{start:07d}-{start + len(truths):07d}"
        tmp = self.folder / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            np.save(tmp / "images.npy", np.stack([t.image for t in truths]))
            np.save(tmp / "semantic.npy", np.stack([t.semantic for t in truths]))
            np.save(tmp / "scene.npy", np.array([t.scene["geosynth"] for t in truths], np.int16))
            rows = [
                [i, k, c[0], c[1], b[0], b[1], b[2]]
                for i, t in enumerate(truths)
                for c, b, k in zip(t.centres, t.boxes, t.classes, strict=True)
            ]
            np.save(tmp / "objects.npy", np.array(rows, np.float32).reshape(-1, 7))
            if self.config.kind == "pair":
                np.save(tmp / "images_b.npy", np.stack([t.image_b for t in truths]))
                np.save(tmp / "change.npy", np.stack([t.change for t in truths]))
            (tmp / "captions.json").write_text(json.dumps([t.caption or "" for t in truths]))
            _write_json(tmp / "meta.json", {"start": start, "count": len(truths), "geosynth": self.version})
            try:
                os.rename(tmp, final)
            except OSError:  # another process wrote the same shard first: same seeds, same content
                shutil.rmtree(tmp, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    # ------------------------------------------------------------------ reading

    def _load(self, shard: Path) -> dict[str, np.ndarray]:
        arrays = self._arrays.get(shard)
        if arrays is None:
            arrays = {p.stem: np.load(p, mmap_mode="r") for p in shard.glob("*.npy")}
            arrays["captions"] = json.loads((shard / "captions.json").read_text())
            objects = np.asarray(arrays["objects"])
            arrays["object_rows"] = objects
            arrays["object_starts"] = np.searchsorted(objects[:, 0], np.arange(len(arrays["scene"]) + 1))
            self._arrays[shard] = arrays
        return arrays

    def indices(self, start: int, count: int) -> list[int]:
        """The sample numbers of [start, start+count) that are in the cache."""
        out = []
        for a, b, _ in self.shards():
            out.extend(range(max(a, start), min(b, start + count)))
        return out

    def truth(self, sample: int) -> Truth:
        if self._index is None:
            self._index = self.shards()
        for a, b, shard in self._index:
            if a <= sample < b:
                arr = self._load(shard)
                i = sample - a
                lo, hi = arr["object_starts"][i], arr["object_starts"][i + 1]
                rows = arr["object_rows"][lo:hi]
                pair = "images_b" in arr
                return Truth(
                    image=np.array(arr["images"][i]),
                    scene={"geosynth": int(arr["scene"][i])},
                    semantic=np.array(arr["semantic"][i]),
                    centres=rows[:, 2:4].copy(),
                    boxes=rows[:, 4:7].copy(),
                    classes=rows[:, 1].astype(np.int64),
                    objects_known=True,
                    image_b=np.array(arr["images_b"][i]) if pair else None,
                    change=np.array(arr["change"][i]) if pair else None,
                    caption=arr["captions"][i] or None,
                )
        raise SynthCacheError(f"sample {sample} is not in the GeoSynth cache {self.folder}; fill it first")

    def __getstate__(self):  # data-loader workers reopen the memory maps themselves
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state
