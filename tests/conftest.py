"""Shared fixtures. Tests never download anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
RS_SAMPLES = Path(
    os.environ.get("GEOASSIST_RS_SAMPLES", REPO_ROOT.parent / "shared" / "rs-samples")
)


@pytest.fixture(scope="session")
def rs_samples() -> Path:
    """Root of the real sample imagery; tests using it skip when it is absent."""
    if not RS_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {RS_SAMPLES} (set GEOASSIST_RS_SAMPLES)")
    return RS_SAMPLES


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where browser tests save screenshots: $GEOASSIST_SCREENSHOTS, else a temporary folder."""
    folder = os.environ.get("GEOASSIST_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


def noise_pngs(folder: Path, names, shape: tuple[int, int], seed: int) -> list[Path]:
    """One PNG of uniform RGB noise (``shape`` is height, width) per name, drawn in order from
    one generator seeded with ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    paths = []
    for name in names:
        path = Path(folder) / name
        Image.fromarray(rng.integers(0, 255, (*shape, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def watch_batches(monkeypatch, trainer, note) -> None:
    """Call ``note(batch)`` on every batch ``trainer`` (the geoassist.train.trainer module)
    collates, as it is made."""
    collate = trainer.collate_conversations

    def recording(pad_token_id):
        fn = collate(pad_token_id)

        def wrapped(items):
            batch = fn(items)
            note(batch)
            return batch

        return wrapped

    monkeypatch.setattr(trainer, "collate_conversations", recording)


@pytest.fixture(scope="session")
def tiny_config():
    from geoassist.config import load_preset

    return load_preset("tiny")


def build_tiny(seed: int = 0, **lora):
    """A fresh random tiny model (well under a second to build)."""
    import torch

    from geoassist.config import load_preset
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = load_preset("tiny")
    if lora:
        config.lora.enabled = True
        for k, v in lora.items():
            setattr(config.lora, k, v)
    torch.manual_seed(seed)
    return GeoAssistModel(config, load_tokenizer(config.lm)).eval()


@pytest.fixture(scope="session")
def tiny_model():
    """A shared tiny model; tests that train or modify a model build their own with build_tiny()."""
    return build_tiny()


@pytest.fixture
def make_tiny():
    """Factory for fresh tiny models: ``make_tiny(seed=0, r=4)`` (LoRA options enable LoRA)."""
    return build_tiny


@pytest.fixture
def one_torch_thread():
    """Tiny models: one thread is faster than two that wait on each other (and on a shared machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _autograd_left_on():
    """A test (or the library code it calls) must not switch autograd off for the
    whole process: the training tests that run after it would fail far from the cause."""
    import torch

    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("autograd was left disabled (use torch.no_grad() as a context)")
