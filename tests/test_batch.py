"""`geoassist batch`: folders, list files and prompt files → JSONL, batched, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def archive(tmp_path):
    folder = tmp_path / "archive"
    (folder / "2023").mkdir(parents=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(5):
        sub = folder / "2023" if i % 2 else folder
        path = sub / f"scene_{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    (folder / "notes.md").write_text("not an image")
    return folder, sorted(str(p) for p in paths)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def assistant(tiny_model):
    from geoassist.assistant import Assistant

    return Assistant(tiny_model)


def test_collect_images_from_folder_list_and_files(archive, tmp_path):
    from geoassist.batch import collect_images

    folder, paths = archive
    assert collect_images([folder]) == paths
    listing = tmp_path / "list.txt"
    listing.write_text("# two scenes\narchive/scene_0.png\n\narchive/2023/scene_1.png  # cloudy\n")
    assert collect_images([listing, paths[0]]) == [
        str(tmp_path / "archive/scene_0.png"),
        str(tmp_path / "archive/2023/scene_1.png"),
    ]


def test_batch_cli_writes_one_line_per_image(archive, tmp_path, capsys):
    from geoassist.cli import main

    folder, paths = archive
    out = tmp_path / "results.jsonl"
    code = main(
        ["batch", str(folder), "--prompt", "Describe the image.", "--out", str(out),
         "--model", "tiny", "--batch-size", "2", "--max-new-tokens", "4"]
    )  # fmt: skip
    assert code == 0
    lines = _lines(out)
    assert [line["id"] for line in lines] == paths
    assert all(line["prompt"] == "Describe the image." and "text" in line for line in lines)
    captured = capsys.readouterr()
    assert "5 answered, 0 failed, 0 already" in captured.out
    assert "batch" in captured.err and "req" in captured.err  # the progress bar


def test_prompts_file_crosses_every_image_with_every_prompt(archive, tmp_path):
    from geoassist.cli import main

    folder, paths = archive
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('Describe the image.\n\n"How many\\nships?"\n')
    out = tmp_path / "r.jsonl"
    args = ["batch", paths[0], paths[1], "--prompts", str(prompts), "--out", str(out)]
    assert main([*args, "--model", "tiny", "--max-new-tokens", "3", "--no-progress"]) == 0
    lines = _lines(out)
    assert sorted(line["id"] for line in lines) == sorted(
        f"{p}#p{k}" for p in paths[:2] for k in range(2)
    )
    assert {line["prompt"] for line in lines} == {"Describe the image.", "How many\nships?"}


def test_resume_skips_answered_ids_and_survives_a_torn_line(archive, tmp_path, assistant):
    from geoassist.batch import build_requests, collect_images, run_archive

    folder, paths = archive
    requests = build_requests(collect_images([folder]), ["What is this?"])
    out = tmp_path / "r.jsonl"
    full = tmp_path / "full.jsonl"
    run_archive(assistant, requests, full, batch_size=5, progress=False,
                generate_options={"max_new_tokens": 5})  # fmt: skip
    first = run_archive(assistant, requests[:2], out, batch_size=2, progress=False,
                        generate_options={"max_new_tokens": 5})  # fmt: skip
    assert first == {"total": 2, "skipped": 0, "answered": 2, "failed": 0}
    with out.open("a") as f:
        f.write('{"id": "' + paths[2] + '", "te')  # killed mid-write
    second = run_archive(assistant, requests, out, batch_size=2, progress=False,
                         generate_options={"max_new_tokens": 5})  # fmt: skip
    assert second == {"total": 5, "skipped": 2, "answered": 3, "failed": 0}
    lines = [json.loads(x) for x in out.read_text().splitlines() if x.endswith("}")]
    assert sorted(line["id"] for line in lines) == paths
    # Batched and resumed answers are the answers of one uninterrupted batched run.
    by_id = {line["id"]: line["raw"] for line in _lines(full)}
    assert {line["id"]: line["raw"] for line in lines} == by_id
    third = run_archive(assistant, requests, out, progress=False)
    assert third["skipped"] == 5 and third["answered"] == 0


def test_batched_answers_equal_one_at_a_time(archive, tmp_path, assistant):
    from geoassist.batch import build_requests, run_archive

    _, paths = archive
    out = tmp_path / "r.jsonl"
    run_archive(assistant, build_requests(paths, ["Describe the image."]), out, batch_size=4,
                progress=False, generate_options={"max_new_tokens": 6})  # fmt: skip
    single = [assistant.ask(p, "Describe the image.", max_new_tokens=6).raw for p in paths]
    assert [line["raw"] for line in _lines(out)] == single


def test_unreadable_image_gets_an_error_line(archive, tmp_path, assistant):
    from geoassist.batch import build_requests, run_archive

    _, paths = archive
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    requests = build_requests([paths[0], str(broken), paths[1]], ["Describe."])
    out = tmp_path / "r.jsonl"
    counts = run_archive(assistant, requests, out, batch_size=3, progress=False,
                         generate_options={"max_new_tokens": 3})  # fmt: skip
    assert counts["answered"] == 2 and counts["failed"] == 1
    lines = {line["id"]: line for line in _lines(out)}
    assert "error" in lines[str(broken)] and "text" in lines[paths[0]]


def test_errors_users_can_cause(tmp_path):
    from geoassist.cli import main

    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "r.jsonl")
    assert main(["batch", str(empty), "--prompt", "x", "--out", out, "--model", "tiny"]) == 1
    (tmp_path / "p.txt").write_text("\n\n")
    assert main(["batch", "a.png", "--prompts", str(tmp_path / "p.txt"), "--out", out]) == 1
    with pytest.raises(SystemExit):  # --prompt or --prompts is required
        main(["batch", "a.png", "--out", out])


def _bomb_png(width=100_000, height=100_000) -> bytes:
    """A 70-odd byte PNG whose header claims ``width``×``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00")) + chunk(b"IEND", b""))  # fmt: skip


def test_a_bomb_and_a_corrupt_file_are_error_lines_and_a_resumed_run_finishes(
    archive, tmp_path, capsys
):
    import time

    from geoassist.cli import main

    _, paths = archive
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_bomb_png())
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(b"II*\x00" + bytes(200))
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join([paths[0], str(bomb), paths[1], str(corrupt), paths[2]]))
    out = tmp_path / "r.jsonl"
    args = ["batch", str(listing), "--prompt", "Describe.", "--out", str(out), "--model", "tiny",
            "--batch-size", "8", "--max-new-tokens", "3", "--no-progress"]  # fmt: skip
    started = time.perf_counter()
    assert main(args) == 0
    assert time.perf_counter() - started < 60  # the bomb is refused from its header
    lines = {line["id"]: line for line in _lines(out)}
    assert set(lines) == {paths[0], str(bomb), paths[1], str(corrupt), paths[2]}
    assert "100000×100000" in lines[str(bomb)]["error"]
    assert "error" in lines[str(corrupt)] and "Traceback" not in lines[str(corrupt)]["error"]
    assert all("text" in lines[p] and "error" not in lines[p] for p in paths[:3])
    assert "3 answered, 2 failed" in capsys.readouterr().out
    # Resumed, nothing is left to do: the run finishes.
    assert main(args) == 0
    assert "0 answered, 0 failed, 5 already" in capsys.readouterr().out
    assert len(_lines(out)) == 5


def test_a_torn_last_line_is_dropped_on_resume(archive, tmp_path, assistant):
    from geoassist.batch import build_requests, run_archive

    _, paths = archive
    requests = build_requests(paths[:3], ["What is this?"])
    out = tmp_path / "r.jsonl"
    run_archive(assistant, requests[:2], out, progress=False, generate_options={"max_new_tokens": 3})
    with out.open("a") as f:
        f.write('{"id": "' + paths[2] + '", "te')  # killed mid-write
    counts = run_archive(
        assistant, requests, out, progress=False, generate_options={"max_new_tokens": 3}
    )
    assert counts == {"total": 3, "skipped": 2, "answered": 1, "failed": 0}
    lines = out.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == paths[:3]  # every line is JSON again
    # A file that is one torn line and nothing else is emptied, then filled.
    torn = tmp_path / "torn.jsonl"
    torn.write_text('{"id": "x", "te')
    run_archive(assistant, requests[:1], torn, progress=False, generate_options={"max_new_tokens": 3})
    assert [json.loads(x)["id"] for x in torn.read_text().splitlines()] == [paths[0]]
