"""Decoding text a user hands over: prompts (argv, stdin, ``@file``) and corpus documents.

Text arrives as bytes (a file, stdin) or as a ``str`` that Python already decoded with
``surrogateescape`` (argv, and stdin under a C/POSIX locale), where bytes that are not valid
UTF-8 survive as lone surrogates that tokenizers reject with a ``TypeError``. Both paths meet
here and end in :class:`TextInputError`, whose message names where the text came from and
what to do, instead of a traceback. The CLI, the app and ``geoassist batch`` share these.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from geoassist.errors import GeoAssistError

__all__ = [
    "TextInputError",
    "looks_binary",
    "decode_text",
    "check_text",
    "read_text_file",
    "read_stdin_text",
]

_SNIFF_BYTES = 8192
# C0 controls other than tab, newline, vertical tab, form feed, carriage return and escape.
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x1b")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class TextInputError(GeoAssistError, ValueError):
    """Text from the user (a prompt, a document) is not readable text."""


def looks_binary(data: bytes) -> str | None:
    """Why ``data`` looks like a binary file rather than text, or None when it looks like text.

    Only the first 8 KiB are looked at: a NUL byte, or more than 10 % control bytes, is what
    images, archives, executables and office files show there and text files do not.
    """
    head = data[:_SNIFF_BYTES]
    if not head:
        return None
    if b"\x00" in head:
        return "it holds NUL bytes"
    controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
    if controls * 10 > len(head):
        return f"{controls} of its first {len(head)} bytes are control characters"
    return None


def decode_text(data: bytes, where: str, *, fallback: str | None = None) -> str:
    """``data`` as text: UTF-8 (a byte-order mark is dropped), else ``fallback`` when given.

    Raises :class:`TextInputError` naming ``where`` when ``data`` looks binary, or when it is
    not UTF-8 and no ``fallback`` encoding (e.g. ``"latin-1"`` for old documents) is allowed.
    """
    why = looks_binary(data)
    if why is not None:
        raise TextInputError(f"{where} is not text ({why}); give a UTF-8 text file instead")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if fallback is not None:
            return data.decode(fallback)
        raise TextInputError(
            f"{where} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "save it as UTF-8 and try again"
        ) from None


def check_text(text: str, where: str) -> str:
    """``text`` unchanged when it is clean text; :class:`TextInputError` when it is not.

    Catches the lone surrogates that stand for undecodable bytes in argv (and in stdin
    under a C/POSIX locale), and NUL characters, which no model input should hold.
    """
    bad = _LONE_SURROGATE.search(text)
    if bad is not None:
        byte = ord(bad[0]) - 0xDC00 if 0xDC80 <= ord(bad[0]) <= 0xDCFF else None
        shown = f" (byte 0x{byte:02x} at character {bad.start()})" if byte is not None else ""
        raise TextInputError(
            f"{where} is not valid UTF-8 text{shown}; pass the prompt as UTF-8 "
            "(check the terminal's encoding, e.g. LANG=C.UTF-8) or put it in a UTF-8 file "
            "and pass @FILE"
        )
    if "\x00" in text:
        raise TextInputError(f"{where} holds a NUL character; remove it and try again")
    return text


def read_text_file(path: str | Path, what: str = "file", *, fallback: str | None = None) -> str:
    """The text of ``path``, checked by :func:`decode_text`; unreadable files are a
    :class:`TextInputError` too (``what`` names the file's role in messages)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TextInputError(
            f"cannot read the {what} {path}: {exc.strerror or exc}; check the path"
        ) from exc
    return decode_text(data, f"the {what} {path}", fallback=fallback)


def read_stdin_text(what: str = "text on standard input") -> str:
    """Standard input as text: its bytes are decoded by :func:`decode_text` when available."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return decode_text(buffer.read(), what)
    return check_text(sys.stdin.read(), what)
