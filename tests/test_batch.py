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
