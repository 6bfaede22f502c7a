"""Prompts that are not text: a binary @FILE, non-UTF-8 bytes on argv or stdin."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from PIL import Image as PILImage

from geoassist.cli import main
from geoassist.commands.core import read_prompt
from geoassist.errors import GeoAssistError
from geoassist.textio import TextInputError, check_text, decode_text, looks_binary


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "scene.png"
    PILImage.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(path)
    return path


def test_a_binary_prompt_file_is_a_clear_error(tmp_path):
    prompt = tmp_path / "photo.jpg"
    prompt.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)))
    with pytest.raises(TextInputError, match=r"the prompt file .*photo\.jpg is not text"):
        read_prompt(f"@{prompt}")


def test_a_non_utf8_prompt_file_names_the_byte(tmp_path):
    prompt = tmp_path / "q.txt"
    prompt.write_bytes("Où est la rivière ?".encode("latin-1"))
    with pytest.raises(TextInputError, match=r"is not UTF-8 text \(byte 0xf9 at offset 1\)"):
        read_prompt(f"@{prompt}")


def test_a_missing_prompt_file_is_a_clear_error(tmp_path):
    with pytest.raises(TextInputError, match="cannot read the prompt file"):
        read_prompt(f"@{tmp_path / 'nope.txt'}")


def test_non_utf8_bytes_on_argv_are_a_clear_error():
    # How Python hands over argv bytes that are not UTF-8: as lone surrogates.
    argv_text = os.fsdecode(b"How many ships \xe0 the port?")
    with pytest.raises(TextInputError, match=r"not valid UTF-8 text \(byte 0xe0 at character 15\)"):
        read_prompt(argv_text)
    assert read_prompt("Combien de bâteaux ?") == "Combien de bâteaux ?"


def test_non_utf8_bytes_on_stdin_are_a_clear_error(monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"Describe \xff\xfe it\n")))
    with pytest.raises(TextInputError, match="the prompt on standard input is not UTF-8 text"):
        read_prompt("-")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO("Décris l'image.\n".encode())))
    assert read_prompt("-") == "Décris l'image."
    # stdin decoded by Python with surrogateescape (a C locale) has no bytes left to check
    monkeypatch.setattr("sys.stdin", io.StringIO(os.fsdecode(b"bad \xff\n")))
    with pytest.raises(TextInputError, match="not valid UTF-8"):
        read_prompt("-")


def test_text_checks():
    assert looks_binary(b"plain text\n\twith tabs\r\n") is None
    assert looks_binary(b"abc\x00def") == "it holds NUL bytes"
    assert "control characters" in looks_binary(bytes(range(1, 32)) * 4)
    assert decode_text("\ufeffwith a BOM".encode(), "x") == "with a BOM"
    assert decode_text(b"caf\xe9", "x", fallback="latin-1") == "café"
    with pytest.raises(TextInputError, match="NUL character"):
        check_text("a\x00b", "the prompt")
    assert issubclass(TextInputError, GeoAssistError)


def test_the_cli_reports_a_binary_prompt_in_one_line(png, tmp_path, capsys):
    prompt = tmp_path / "prompt.bin"
    prompt.write_bytes(bytes(range(256)) * 4)
    code = main(["ask", str(png), f"@{prompt}", "--model", "tiny"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("error: the prompt file") and "is not text" in err
    code = main(["ask", str(png), os.fsdecode(b"\xff\xfe?"), "--model", "tiny"])
    err = capsys.readouterr().err
    assert code == 1 and "the prompt is not valid UTF-8 text (byte 0xff" in err
