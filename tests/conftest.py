"""Shared fixtures. Tests never download anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO_ROOT = Path(__file__).resolve().parents[1]
RS_SAMPLES = Path(os.environ.get("GEOASSIST_RS_SAMPLES", REPO_ROOT.parent / "shared" / "rs-samples"))


@pytest.fixture(scope="session")
def rs_samples() -> Path:
    """Root of the real sample imagery; tests using it skip when it is absent."""
    if not RS_SAMPLES.is_dir():
        pytest.skip(f"real samples not found at {RS_SAMPLES} (set GEOASSIST_RS_SAMPLES)")
    return RS_SAMPLES
