"""`geoassist kb build | add | delete | search | info` end to end (weights-free hashing embedder, fast)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from geoassist.cli import main


@pytest.fixture
def docs(tmp_path):
    src = tmp_path / "docs"
    src.mkdir()
    (src / "water.md").write_text(
        "# Water\n\n## Indices\n\nMNDWI maps open water with green and SWIR.\n\n## SAR\n\nCalm water is dark in radar."
    )
    (src / "fire.txt").write_text("Burn scars have low NBR.\n\nActive fires glow in SWIR.")
    (src / "facts.jsonl").write_text(
        json.dumps(
            {"id": "lcz-7", "title": "LCZ 7", "text": "Lightweight low-rise informal settlements."}
        )
        + "\n"
    )
    return src


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_build_search_info_add_delete(docs, tmp_path, capsys):
    kb = tmp_path / "kb"
    code, out, _ = run(
        capsys, "kb", "build", "--src", str(docs), "--out", str(kb), "--embedder", "hashing"
    )
    assert (
        code == 0 and "4 entries from 3 files" in out and "chunks/s" in out and "index flat" in out
    )

    code, out, _ = run(
        capsys, "kb", "search", str(kb), "open water with SWIR", "--k", "2", "--json"
    )
    hits = json.loads(out)
    assert code == 0 and len(hits) == 2 and hits[0]["id"] == "water.md#1"
    assert all(set(h) == {"id", "title", "text", "source", "score"} for h in hits)
    assert hits[0]["score"] >= hits[1]["score"] and hits[0]["title"] == "Water › Indices"

    code, out, _ = run(capsys, "kb", "search", str(kb), "informal settlements")
    assert code == 0 and out.startswith("1. [lcz-7] LCZ 7") and "score" in out

    code, out, _ = run(capsys, "kb", "info", str(kb))
    assert (
        code == 0
        and "4 (4 text, 0 image) in 3 documents" in out
        and "hashing-256" in out
        and "index flat" in out
    )
    info = json.loads(run(capsys, "kb", "info", str(kb), "--json")[1])
    assert info["spaces"]["text"]["index"]["kind"] == "flat" and info["entries"] == 4

    more = tmp_path / "more.md"
    more.write_text("# Snow\n\nSnow is bright in green and dark in SWIR.")
    code, out, _ = run(capsys, "kb", "add", str(kb), str(more))
    assert code == 0 and "added 1 entries" in out and "(5 in all)" in out
    code, _, err = run(capsys, "kb", "add", str(kb), str(more))
    assert code == 1 and "already in the store" in err
    more.write_text("# Snow\n\nFirst.\n\n## Two\n\nSecond part.")
    code, out, _ = run(capsys, "kb", "add", str(kb), str(more), "--replace")
    assert code == 0 and "(6 in all)" in out

    code, out, _ = run(capsys, "kb", "delete", str(kb), "water.md")
    assert code == 0 and "removed 2 entries" in out
    code, _, err = run(capsys, "kb", "delete", str(kb), "nope")
    assert code == 1 and "no entry or document" in err
    ids = [
        h["id"]
        for h in json.loads(run(capsys, "kb", "search", str(kb), "water", "--k", "10", "--json")[1])
    ]
    assert "water.md#1" not in ids and "more.md#2" in ids


def test_build_with_image_model_and_search_by_image(tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("port", "field"):
        PILImage.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            src / f"{name}.png"
        )
        (src / f"{name}.txt").write_text(f"an aerial view of a {name}")
    kb = tmp_path / "kb"
    # A preset with random weights gets a new tower every time it is built, so search in the same process
    # through the Python API is covered elsewhere; here we check the build records the image index.
    code, out, _ = run(
        capsys,
        "kb",
        "build",
        "--src",
        str(src),
        "--out",
        str(kb),
        "--embedder",
        "hashing",
        "--image-model",
        "tiny",
    )
    assert code == 0 and "2 entries" in out
    info = json.loads(run(capsys, "kb", "info", str(kb), "--json")[1])
    assert info["image_entries"] == 2 and info["spaces"]["image"]["vectors"] == 2
    assert info["spaces"]["image"]["embedder_kind"] == "geoassist-vision"
    code, _, err = run(
        capsys, "kb", "search", str(kb), "--image", str(src / "port.png"), "--model", "tiny"
    )
    assert (
        code == 1 and "embeds differently" in err
    )  # a fresh random tower is not the one the store was built with


def test_user_errors_exit_1_with_advice(tmp_path, capsys):
    code, _, err = run(capsys, "kb", "search", str(tmp_path / "missing"), "water")
    assert code == 1 and "kb build" in err
    code, _, err = run(
        capsys,
        "kb",
        "build",
        "--src",
        str(tmp_path),
        "--out",
        str(tmp_path / "kb"),
        "--embedder",
        "hashing",
    )
    assert code == 1 and "no documents found" in err
    code, _, err = run(capsys, "kb", "build", "--out", str(tmp_path / "kb"))
    assert code == 1 and "--src" in err
    code, _, err = run(capsys, "kb", "search", "default")
    assert code == 1 and "give a query" in err
    code, _, err = run(capsys, "kb", "delete", "default", "s2-b8")
    assert code == 1 and "build your own" in err
    (tmp_path / "kb2").mkdir()
    (tmp_path / "kb2" / "manifest.json").write_text("[]")
    code, _, err = run(capsys, "kb", "info", str(tmp_path / "kb2"))
    assert code == 1 and "not valid JSON" in err
    assert main(["kb"]) == 2


def test_default_store_from_the_cli(capsys):
    code, out, _ = run(
        capsys,
        "kb",
        "search",
        "default",
        "Which Sentinel-2 band is near-infrared at 10 m?",
        "--k",
        "5",
        "--json",
    )
    assert code == 0 and json.loads(out)[0]["id"] == "s2-b8"


def test_build_default_into_the_cache(tmp_path, capsys, monkeypatch):
    import geoassist.rag.corpus as corpus_module
    from geoassist.rag import HashingEmbedder

    monkeypatch.setenv("GEOASSIST_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus_module, "default_text_embedder", lambda: HashingEmbedder(64))
    code, out, _ = run(capsys, "kb", "build", "--default")
    assert (
        code == 0
        and "built the default store" in out
        and str(tmp_path / "cache" / "kb" / "default") in out
    )
    assert (tmp_path / "cache" / "kb" / "default" / "manifest.json").is_file()
    code, _, err = run(capsys, "kb", "build", "--default", "--out", str(tmp_path / "x"))
    assert code == 1 and "drop --src/--out" in err
