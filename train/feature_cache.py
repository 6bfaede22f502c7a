"""Vision-tower features computed once per image, for stages whose tower is frozen.

With the tower frozen (stage 1, and stage 2 without ``train_vision_blocks``) its output for an
image never changes during the stage, yet every sample that shows the image would run it
again. The cache runs the tower once per distinct image before training and keeps the result
on disk, so a training step pays only for the projector, the LM (+ LoRA) and the losses.

A cached tensor is found by three things, all part of its path::

    <root>/<tower fingerprint>-<preprocess fingerprint>/<ab>/<image sha256>.safetensors

- the image's content (sha256 of the file's bytes: a file rewritten in place is a new image);
- the tower (a hash of its configuration and every weight): a retrained tower, another
  ``feature_layer`` or another checkpoint never reads the features of the old one;
- the preprocessing (size, bands, mean/std, stretch, sensor): another input pipeline never
  reads features made for a different one.

Each file also names the three keys in its safetensors metadata, checked when it is read.
Files are written under a temporary name and renamed, so a crash never leaves a half file;
nothing is pickled. Several runs may share one cache folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from geoassist.errors import GeoAssistError

logger = logging.getLogger(__name__)

FORMAT = "geoassist-features/1"


class FeatureCacheError(GeoAssistError):
    """A cached feature file is damaged or belongs to another tower or preprocessing."""


def _digest(parts: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()[:20]


def tower_fingerprint(vision: torch.nn.Module) -> str:
    """A hash of the tower's configuration and of every tensor in its state (names, shapes, values)."""
    config = getattr(vision, "config", None)
    described = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else repr(config)
    used = getattr(vision, "num_blocks_used", None)  # the block whose output is read
    parts = [json.dumps({"config": described, "blocks_used": used}, sort_keys=True, default=str).encode()]
    for name, tensor in sorted(vision.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        parts.append(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        parts.append(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return _digest(parts)


def preprocess_fingerprint(preprocess) -> str:
    """A hash of the preprocessing configuration (everything that decides the tower's input)."""
    described = dataclasses.asdict(preprocess) if dataclasses.is_dataclass(preprocess) else preprocess
    return _digest([json.dumps(described, sort_keys=True, default=str).encode()])


def image_digest(path: str | Path) -> str:
    """sha256 of an image file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class FeatureCache:
    """The features of one tower + preprocessing, one safetensors file per image."""

    def __init__(self, root: str | Path, vision: torch.nn.Module, preprocess):
        self.root = Path(root).expanduser()
        self.tower = tower_fingerprint(vision)
        self.preprocess = preprocess_fingerprint(preprocess)
        self.folder = self.root / f"{self.tower}-{self.preprocess}"
        self.hits = 0
        self.computed = 0

    def path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.safetensors"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def load(self, digest: str) -> torch.Tensor:
        """The tower's output for the image with content hash ``digest`` (tokens, width)."""
        path = self.path(digest)
        try:
            with safe_open(str(path), framework="pt") as f:  # metadata and tensors in one read
                meta = f.metadata() or {}
                tensors = {name: f.get_tensor(name) for name in f.keys()}
        except (OSError, SafetensorError) as exc:
            raise FeatureCacheError(
                f"cached features {path} cannot be read ({exc}); delete the file (or the folder "
                f"{self.folder}) and the next run computes them again"
            ) from None
        expected = {"format": FORMAT, "tower": self.tower, "preprocess": self.preprocess, "image": digest}
        wrong = {k: meta.get(k) for k, v in expected.items() if meta.get(k) != v}
        if wrong or "features" not in tensors:
            raise FeatureCacheError(
                f"cached features {path} do not belong to this tower, preprocessing and image "
                f"(mismatched {sorted(wrong) or ['features']}); delete the file and run again"
            )
        self.hits += 1
        return tensors["features"]

    def store(self, digest: str, features: torch.Tensor) -> Path:
        """Write one image's features atomically (a temporary file renamed into place)."""
        path = self.path(digest)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"format": FORMAT, "tower": self.tower, "preprocess": self.preprocess, "image": digest}
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
        os.close(fd)
        try:
            save_file({"features": features.detach().to("cpu").contiguous()}, tmp, metadata=meta)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self.computed += 1
        return path

    @torch.no_grad()
    def fill(
        self,
        model,
        images: dict[str, Path],
        *,
        batch_size: int = 16,
        device: torch.device | str = "cpu",
    ) -> int:
        """Run the tower on every image (``digest -> file``) not cached yet; returns how many ran."""
        from geoassist.io import load_image
        from geoassist.preprocess import to_pixel_values

        missing = [(d, p) for d, p in images.items() if not self.has(d)]
        if not missing:
            return 0
        logger.info(
            "feature cache: computing %d of %d images' tower features into %s",
            len(missing), len(images), self.folder,
        )  # fmt: skip
        was_training = model.vision.training
        model.vision.eval()
        try:
            from tqdm.auto import tqdm

            for start in tqdm(range(0, len(missing), batch_size), desc="features", unit="batch"):
                chunk = missing[start : start + batch_size]
                pixels = torch.stack(
                    [to_pixel_values(load_image(p), model.config.preprocess) for _, p in chunk]
                ).to(device)
                features = model.vision(pixels).float()
                for (digest, _), one in zip(chunk, features, strict=True):
                    self.store(digest, one)
        finally:
            model.vision.train(was_training)
        return len(missing)


def tower_is_frozen(model) -> bool:
    """Whether no parameter of the tower trains (the only case where its features can be cached)."""
    return not any(p.requires_grad for p in model.vision.parameters())


def digests_of(paths: Sequence[Path]) -> dict[Path, str]:
    """Content hashes of image files (each file read once)."""
    return {p: image_digest(p) for p in dict.fromkeys(paths)}
