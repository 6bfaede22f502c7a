"""One vector space of a store: its vectors, their row ids, and the FAISS index over them.

The vectors and ids are the source of truth (they are saved as ``.npy``); the
FAISS index is derived from them. Small spaces use an exact inner-product flat
index; above ``flat_max`` vectors the ``auto`` plan switches to an IVF index
(which supports deletion and runs on GPU with faiss-gpu), and HNSW can be asked
for by name. The plan — kind, parameters and the reason it was chosen — is
recorded in the store's manifest.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.rag.errors import CorruptStoreError, KnowledgeStoreError

logger = logging.getLogger(__name__)

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
FLAT_MAX = 20_000  # exact search stays under a few milliseconds per query up to about here on a CPU
IVF_TRAIN_PER_LIST = (
    32  # training points per inverted list (faiss warns below 39; 32 keeps builds quick)
)
RETRAIN_GROWTH = (
    8  # an IVF index is retrained once the space grows past this many times its training size
)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


@dataclass
class IndexPlan:
    """Which FAISS index a space uses, with what parameters, and why."""

    kind: str  # "flat", "ivf" or "hnsw"
    reason: str = ""
    nlist: int = 0
    nprobe: int = 0
    m: int = 0
    ef_construction: int = 0
    ef_search: int = 0
    trained_on: int = 0
    requested: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (0, "")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexPlan:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def ivf_lists(n: int) -> int:
    """About 2·√n inverted lists, as a power of two in [16, 16384]."""
    return int(min(16384, max(16, 2 ** round(math.log2(max(2 * math.sqrt(max(n, 1)), 1))))))


def ivf_probes(nlist: int) -> int:
    """Lists scanned per query: 1/16 of them, at least 8 (recall@10 ≥ 0.95 on the benchmark's data)."""
    return int(min(nlist, max(8, nlist // 16)))


def plan_index(n: int, requested: str = "auto", *, flat_max: int = FLAT_MAX) -> IndexPlan:
    """The index for a space of ``n`` vectors. ``requested`` is ``auto``, ``flat``, ``ivf`` or ``hnsw``."""
    if requested not in INDEX_KINDS:
        raise KnowledgeStoreError(
            f"unknown index kind {requested!r}; use one of {', '.join(INDEX_KINDS)}"
        )
    kind = requested
    reason = f"asked for {requested}"
    if requested == "auto":
        if n <= flat_max:
            kind, reason = "flat", f"auto: {n} vectors ≤ flat_max {flat_max}, exact search"
        else:
            kind, reason = "ivf", f"auto: {n} vectors > flat_max {flat_max}, approximate IVF search"
    if kind == "ivf" and n < 2 * 16:
        kind, reason = "flat", f"{reason}; too few vectors ({n}) to train IVF, exact search"
    if kind == "flat":
        return IndexPlan("flat", reason, requested=requested)
    if kind == "ivf":
        nlist = min(ivf_lists(n), max(16, n // IVF_TRAIN_PER_LIST))
        return IndexPlan(
            "ivf", reason, nlist=nlist, nprobe=ivf_probes(nlist), trained_on=n, requested=requested
        )
    return IndexPlan(
        "hnsw",
        reason,
        m=HNSW_M,
        ef_construction=HNSW_EF_CONSTRUCTION,
        ef_search=HNSW_EF_SEARCH,
        requested=requested,
    )


def gpu_available() -> bool:
    """True when faiss-gpu is installed and sees a GPU."""
    import faiss

    try:
        return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except Exception:  # a faiss build without GPU support raises on the query itself
        return False


@dataclass
class VectorSpace:
    """The vectors of one modality, keyed by the store's row ids, behind a FAISS index."""

    dim: int
    requested: str = "auto"
    flat_max: int = FLAT_MAX
    use_gpu: bool | None = None  # None: use a GPU when faiss-gpu and a GPU are there
    plan: IndexPlan = field(default_factory=lambda: IndexPlan("flat", "empty"))
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.vectors is None:
            self.vectors = np.zeros((0, self.dim), dtype=np.float32)
        self._index = None
        self._gpu_index = None
        self._stale = True  # the FAISS index must be (re)built from the arrays

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    # ------------------------------------------------------------- building
    def _build(self) -> None:
        import faiss

        n = len(self)
        self.plan = plan_index(n, self.requested, flat_max=self.flat_max)
        plan = self.plan
        if plan.kind == "flat":
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        elif plan.kind == "ivf":
            quantizer = faiss.IndexFlatIP(self.dim)
            index = faiss.IndexIVFFlat(quantizer, self.dim, plan.nlist, faiss.METRIC_INNER_PRODUCT)
            sample = self.vectors
            limit = plan.nlist * IVF_TRAIN_PER_LIST * 2
            if n > limit:
                rows = np.random.default_rng(0).choice(n, limit, replace=False)
                sample = self.vectors[np.sort(rows)]
            index.cp.niter = 10
            index.train(np.ascontiguousarray(sample))
            plan.trained_on = n
        else:
            inner = faiss.IndexHNSWFlat(self.dim, plan.m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = plan.ef_construction
            index = faiss.IndexIDMap2(inner)
        if n:
            index.add_with_ids(np.ascontiguousarray(self.vectors), self.ids)
        self._index = index
        self._gpu_index = None
        self._stale = False
        logger.debug("built %s index over %d vectors (%s)", plan.kind, n, plan.reason)

    def _needs_replan(self) -> bool:
        n = len(self)
        if self.plan.kind == "ivf":
            return n > RETRAIN_GROWTH * max(self.plan.trained_on, 1)
        return plan_index(n, self.requested, flat_max=self.flat_max).kind != self.plan.kind

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(ids) != len(vectors):
            raise KnowledgeStoreError(
                f"expected ({len(ids)}, {self.dim}) vectors, got {vectors.shape}"
            )
        self.ids = np.concatenate([self.ids, ids])
        self.vectors = np.concatenate([self.vectors, vectors]) if len(self.vectors) else vectors
        if self._stale or self._needs_replan():
            self._stale = True
            return
        self._index.add_with_ids(vectors, ids)
        self._gpu_index = None

    def remove(self, ids: np.ndarray) -> None:
        import faiss

        ids = np.asarray(ids, dtype=np.int64)
        keep = ~np.isin(self.ids, ids)
        if keep.all():
            return
        self.ids = self.ids[keep]
        self.vectors = np.ascontiguousarray(self.vectors[keep])
        if self._stale or self.plan.kind == "hnsw" or self._needs_replan():
            self._stale = True  # HNSW cannot delete in place: rebuild before the next search
            return
        self._index.remove_ids(faiss.IDSelectorBatch(ids))
        self._gpu_index = None

    def vectors_for(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(found mask, vectors of the found ids) — exact vectors, for rescoring."""
        order = np.argsort(self.ids)
        sorted_ids = self.ids[order]
        pos = np.searchsorted(sorted_ids, ids)
        pos = np.clip(pos, 0, max(len(sorted_ids) - 1, 0))
        found = (sorted_ids[pos] == ids) if len(sorted_ids) else np.zeros(len(ids), dtype=bool)
        return found, self.vectors[order[pos[found]]]

    # ------------------------------------------------------------- searching
    def _set_search_parameters(self, k: int) -> None:
        import faiss

        if self.plan.kind == "ivf":
            faiss.extract_index_ivf(self._index).nprobe = self.plan.nprobe
        elif self.plan.kind == "hnsw":
            faiss.downcast_index(self._index.index).hnsw.efSearch = max(self.plan.ef_search, k)

    def _searchable(self, k: int):
        if self._stale:
            self._build()
        self._set_search_parameters(k)
        if self.use_gpu is not False and self.plan.kind in ("flat", "ivf") and gpu_available():
            if self._gpu_index is None:
                import faiss

                # The clone carries nprobe; HNSW stays on the CPU (faiss-gpu has no HNSW).
                self._gpu_resources = (
                    getattr(self, "_gpu_resources", None) or faiss.StandardGpuResources()
                )
                self._gpu_index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, self._index)
            return self._gpu_index
        return self._index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, ids), each (len(queries), k), best first; missing results have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise KnowledgeStoreError(f"queries must be (n, {self.dim}); got {queries.shape}")
        if len(self) == 0 or k <= 0:
            return np.zeros((len(queries), 0), np.float32), np.zeros((len(queries), 0), np.int64)
        return self._searchable(k).search(queries, min(k, len(self)))

    # ------------------------------------------------------------ persistence
    def file_names(self, prefix: str) -> list[str]:
        names = [f"{prefix}.ids.npy", f"{prefix}.vectors.npy"]
        if self.plan.kind != "flat":
            names.append(f"{prefix}.faiss")
        return names

    def save(self, folder: Path, prefix: str) -> list[str]:
        """Write the arrays (and the index, unless it is a flat one that is cheap to rebuild)."""
        import faiss

        if self._stale:
            self._build()
        names = self.file_names(prefix)
        np.save(folder / names[0], self.ids, allow_pickle=False)
        np.save(folder / names[1], self.vectors, allow_pickle=False)
        if len(names) > 2:
            faiss.write_index(self._index, str(folder / names[2]))
        return names

    def state(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "count": len(self),
            "requested": self.requested,
            "flat_max": self.flat_max,
            "plan": self.plan.to_dict(),
        }

    @classmethod
    def load(
        cls, folder: Path, files: list[str], state: dict[str, Any], *, use_gpu: bool | None = None
    ) -> VectorSpace:
        import faiss

        dim = int(state["dim"])
        try:
            ids = np.load(folder / files[0], allow_pickle=False)
            vectors = np.load(folder / files[1], allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptStoreError(f"cannot read the vectors in {folder}: {exc}") from exc
        if (
            ids.dtype != np.int64
            or ids.ndim != 1
            or vectors.dtype != np.float32
            or vectors.shape != (len(ids), dim)
        ):
            raise CorruptStoreError(
                f"the vectors in {folder} are inconsistent: ids {ids.shape} {ids.dtype}, vectors {vectors.shape} "
                f"{vectors.dtype}, expected {dim}-d float32"
            )
        if len(ids) != int(state["count"]):
            raise CorruptStoreError(
                f"{folder} records {state['count']} vectors but holds {len(ids)}"
            )
        space = cls(
            dim,
            requested=state.get("requested", "auto"),
            flat_max=int(state.get("flat_max", FLAT_MAX)),
            use_gpu=use_gpu,
            plan=IndexPlan.from_dict(state.get("plan", {"kind": "flat"})),
            ids=ids,
            vectors=vectors,
        )
        if len(files) > 2:
            try:
                index = faiss.read_index(str(folder / files[2]))
            except RuntimeError as exc:
                raise CorruptStoreError(
                    f"cannot read the FAISS index {folder / files[2]}: {exc}"
                ) from exc
            if index.ntotal != len(ids) or index.d != dim:
                raise CorruptStoreError(
                    f"the FAISS index {folder / files[2]} does not match its vectors"
                )
            space._index = index
            space._stale = False
        return space
