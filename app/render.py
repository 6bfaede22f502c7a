"""Chat text: the answer while it streams, the finished answer, and its cited sources.

Model text carries geometry in the answer grammar (``<ref>…</ref><box>…</box>``,
see docs/FORMATS.md). The chat shows it readably: while streaming, geometry tags
become small symbols; once finished, the parsed text plus a line saying what was
drawn on the image. Messages are Gradio's ``{"role", "content", "metadata"}`` dicts.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from typing import Any

_GEOMETRY = {"box": "▭", "obox": "◇", "poly": "⬠", "polygon": "⬠", "point": "•"}
_CLOSED_TAG = re.compile(r"<(box|obox|poly|polygon|point)>[^<]*</\1>", re.IGNORECASE)
_REF = re.compile(r"<ref>(.*?)</ref>", re.IGNORECASE | re.DOTALL)
_MASK = re.compile(r"<mask>.*?(</mask>|$)", re.IGNORECASE | re.DOTALL)
_OPEN_AT_END = re.compile(r"<[^<>]*$")
_OTHER_TAG = re.compile(r"</?[a-z_]+>", re.IGNORECASE)


def preview_text(raw: str) -> str:
    """The text so far, with geometry tags shown as symbols and no half-written tag at the end."""
    text = _MASK.sub(" [mask] ", raw)
    text = _CLOSED_TAG.sub(lambda m: _GEOMETRY[m.group(1).lower()], text)
    text = _REF.sub(lambda m: m.group(1), text)
    text = _OPEN_AT_END.sub("", text)
    text = _OTHER_TAG.sub("", text)
    return html.escape(text, quote=False)


def _plural(label: str, n: int) -> str:
    return f"{n} × {label}" if n != 1 else f"1 × {label}"


def drawn_summary(answer: Any) -> str:
    """``"Drawn: 3 × building, 1 × pool (rotated), a mask"`` — or ``""`` when nothing was."""
    parts: list[str] = []
    boxes = Counter((b.get("label") or "object") for b in answer.boxes or [])
    parts += [_plural(label, n) for label, n in boxes.items()]
    oboxes = Counter((b.get("label") or "object") for b in answer.obboxes or [])
    parts += [_plural(label, n) + " (rotated)" for label, n in oboxes.items()]
    polygons = Counter((p.get("label") or "outline") for p in answer.polygons or [])
    parts += [_plural(label, n) + " (outline)" for label, n in polygons.items()]
    mask = getattr(answer, "mask", None)
    if mask is not None and mask.any():
        share = 100.0 * float(mask.mean())
        parts.append(f"a mask over {share:.1f} % of the image")
    return ("Drawn on the image: " + ", ".join(parts)) if parts else ""


def _answers_with_geometry(task: str | None) -> bool:
    """Whether ``task`` answers with boxes or masks (its answer kind in the task registry)."""
    from geoassist.tasks import GEOMETRY_ANSWER_KINDS, TASKS

    return task in TASKS and TASKS[task].answer_kind in GEOMETRY_ANSWER_KINDS


STOPPED_NOTE = "*(stopped — the answer so far)*"


def final_text(answer: Any, *, cut_note: str = "") -> str:
    """The finished answer for the chat: its text, what was drawn, and notes in plain words.

    No grammar tag ever reaches the chat (geometry is drawn and listed in the table);
    parts of the output that could not be read are said in words, as are a stop, history
    left out to fit the context, and how much of a large scene was read.
    """
    from geoassist.answer import plain_text

    text = html.escape(plain_text(preview_text_raw(answer.text or "")).strip(), quote=False)
    lines = [text] if text else []
    summary = drawn_summary(answer)
    if summary:
        lines.append(f"*{summary}.*")
    if _answers_with_geometry(answer.task) and not summary:
        lines.append("*Nothing found to draw.*")
    if not lines:
        lines.append("*(the model gave no text)*")
    if answer.parse_errors:
        lines.append(
            "*Part of the model's answer was not in a form GeoAssist can draw, so it was left out.*"
            if len(answer.parse_errors) == 1
            else "*Some parts of the model's answer were not in a form GeoAssist can draw, so "
            "they were left out.*"
        )
    coverage = getattr(answer, "coverage", None) or {}
    if coverage.get("note"):
        lines.append(f"*Large scene: {html.escape(str(coverage['note']), quote=False)}.*")
    for note in getattr(answer, "notes", None) or []:
        lines.append(f"*Note: {html.escape(note, quote=False)}.*")
    if getattr(answer, "stopped", False):
        lines.append(STOPPED_NOTE)
    return "\n\n".join(lines) + cut_note


def preview_text_raw(text: str) -> str:
    """``text`` with geometry tags removed (not escaped: :func:`final_text` escapes once)."""
    text = _MASK.sub(" ", text)
    text = _CLOSED_TAG.sub(" ", text)
    text = _REF.sub(lambda m: m.group(1), text)
    return _OTHER_TAG.sub("", text)


def citation_messages(answer: Any, passage_for=None) -> list[dict[str, Any]]:
    """One collapsible chat message per retrieved passage, cited ones first.

    ``passage_for(id)`` returns a passage's text (``None`` when unknown).
    """
    citations = list(getattr(answer, "citations", None) or [])
    citations.sort(key=lambda c: not c.get("cited", True))
    messages = []
    for c in citations:
        title = c.get("title") or c.get("id", "")
        source = f" — {c['source']}" if c.get("source") else ""
        mark = "" if c.get("cited", True) else " (retrieved, not cited)"
        body = passage_for(c.get("id")) if passage_for else None
        content = html.escape(body.strip(), quote=False) if body else "*(passage not available)*"
        if c.get("url"):
            content += f"\n\n[{c['url']}]({c['url']})"
        messages.append(
            {
                "role": "assistant",
                "content": content,
                "metadata": {
                    "title": f"📄 [{c.get('id', '?')}] {title}{source}{mark}",
                    "status": "done",
                },
            }
        )
    return messages
