"""Reading documents into entries: chunking by headings and paragraphs with overlap; Markdown, text, JSONL, PDF, images."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from geoassist.rag.chunking import chunk_markdown, chunk_text, pack, split_sentences
from geoassist.rag.ingest import Reader, read_entries


def make_pdf(pages: list[str]) -> bytes:
    """A minimal valid PDF with one line of Helvetica text per page (for tests; no PDF writer needed)."""
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        None,
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    kids = []
    for text in pages:
        stream = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream.decode()}\nendstream")
        content = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode()
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return bytes(out)


MARKDOWN = """---
title: Flood mapping notes
source: Field guide
url: https://example.org/floods
licence: CC-BY-4.0
tags: [flood, sar]
---
# Ignored because the front matter names the title

Intro paragraph about floods.

## Optical

Water is dark in NIR.

```python
# not a heading inside a code fence
x = 1
```

## SAR

### Thresholds

Calm water is below -18 dB in VV.
"""


def test_markdown_chunks_by_heading_with_front_matter(tmp_path):
    (tmp_path / "floods.md").write_text(MARKDOWN)
    entries, report = read_entries(tmp_path)
    assert report.files == 1 and not report.skipped
    assert [e.id for e in entries] == ["floods.md#1", "floods.md#2", "floods.md#3"]
    assert [e.title for e in entries] == [
        "Flood mapping notes",
        "Flood mapping notes › Optical",
        "Flood mapping notes › SAR › Thresholds",
    ]
    assert "# not a heading" in entries[1].text
    first = entries[0]
    assert (first.source, first.url, first.licence, first.tags, first.doc_id) == (
        "Field guide",
        "https://example.org/floods",
        "CC-BY-4.0",
        ["flood", "sar"],
        "floods.md",
    )


def test_long_text_is_cut_with_overlap(tmp_path):
    sentences = [f"Sentence number {i} talks about band {i} of the sensor." for i in range(60)]
    (tmp_path / "notes.txt").write_text(
        " ".join(sentences[:30]) + "\n\n" + " ".join(sentences[30:])
    )
    entries, _ = read_entries(tmp_path, max_chars=400, overlap_chars=120)
    assert len(entries) > 5 and all(len(e.text) <= 400 for e in entries)
    assert [e.id for e in entries][:2] == ["notes.txt#1", "notes.txt#2"]
    for prev, nxt in zip(entries, entries[1:], strict=False):
        last = split_sentences(prev.text.replace("\n\n", " "))[-1]
        assert last in nxt.text, "each chunk starts with the end of the previous one"
    joined = " ".join(e.text for e in entries)
    assert all(s in joined for s in sentences)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abcdefgh .", min_size=1, max_size=300), min_size=1, max_size=12))
def test_pack_keeps_every_word_and_bounds_chunk_size(paragraphs):
    paragraphs = [p.strip() for p in paragraphs if p.strip()]
    chunks = pack(paragraphs, max_chars=120, overlap_chars=30)
    assert all(len(c) <= 120 for c in chunks)
    text = " ".join(chunks).split()
    for word in " ".join(paragraphs).split():
        assert word in text or any(word in t for t in text)


def test_chunk_helpers():
    title, chunks = chunk_markdown("# T\n\npara one\n\n## A\n\npara two")
    assert title == "T" and chunks == [([], "para one"), (["A"], "para two")]
    assert chunk_text("a\n\n\nb") == ["a\n\nb"]
    with pytest.raises(ValueError):
        pack(["x"], max_chars=10, overlap_chars=10)


def test_jsonl_records_images_and_instruction_records(tmp_path):
    PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    records = [
        {
            "id": "kb-1",
            "title": "One",
            "text": "First fact.",
            "source": "S",
            "url": "u",
            "license": "MIT",
            "tags": "x, y",
        },
        {"image": "a.png", "caption": "a dark square field"},
        {
            "id": "rsicd:7",
            "task": "caption",
            "images": ["a.png"],
            "conversations": [
                {"role": "user", "content": "<image>\n[caption] Describe the image."},
                {"role": "assistant", "content": "Many buildings near a river."},
            ],
        },
        {
            "id": "vqa:1",
            "images": ["a.png"],
            "conversations": [
                {"from": "human", "value": "<image>\nIs there water?"},
                {"from": "gpt", "value": "yes"},
            ],
        },
        {"id": "bad", "title": "no text"},
        {
            "id": "two",
            "images": ["a.png", "a.png"],
            "messages": [{"role": "assistant", "content": "x"}],
        },
    ]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\nnot json\n")
    entries, report = read_entries(tmp_path)
    by_id = {e.id: e for e in entries}
    assert by_id["kb-1"].licence == "MIT" and by_id["kb-1"].tags == ["x", "y"]
    assert by_id["data.jsonl:2"].image == str((tmp_path / "a.png").resolve())
    assert by_id["rsicd:7"].text == "Many buildings near a river." and by_id["rsicd:7"].tags == [
        "caption"
    ]
    assert by_id["vqa:1"].text == "Q: Is there water? A: yes"
    reasons = " ".join(r for _, r in report.skipped)
    assert (
        "no 'text'" in reasons
        and "2 images" in reasons
        and "line 7" in " ".join(p for p, _ in report.skipped)
    )


def test_pdf_pages_are_read_and_bad_pdfs_reported(tmp_path):
    (tmp_path / "manual.pdf").write_bytes(make_pdf(["Band 8 is near infrared.", "Band 4 is red."]))
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    entries, report = read_entries(tmp_path)
    assert [(e.id, e.text) for e in entries] == [
        ("manual.pdf#p1.1", "Band 8 is near infrared."),
        ("manual.pdf#p2.1", "Band 4 is red."),
    ]
    assert entries[1].source == "manual.pdf, p. 2" and entries[1].title.endswith("(p. 2)")
    assert report.skipped and report.skipped[0][0] == "broken.pdf"


def test_captioned_images_and_missing_captions(tmp_path):
    for name in ("harbour", "field"):
        PILImage.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "harbour.txt").write_text("Ships moored in a harbour.")
    reader = Reader()
    entries = list(reader.read(tmp_path))
    assert [(e.id, e.text, e.is_image) for e in entries] == [
        ("harbour.png", "Ships moored in a harbour.", True)
    ]
    assert reader.report.skipped == [
        ("field.png", "an image needs a caption: put it in a .txt file of the same name")
    ]
    with pytest.raises(Exception, match="no such file"):
        list(reader.read(tmp_path / "missing"))
