"""Assistant.ask end to end on the tiny model, the CLI, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import noise_pngs
from PIL import Image as PILImage

from geoassist.assistant import Answer, AnswerStream, Assistant
from geoassist.cli import main
from geoassist.errors import (
    ContextTooLongError,
    GeoAssistError,
    ImageNotFoundError,
    ImageSlotMismatchError,
)
from geoassist.rle import mask_to_rle, rle_to_mask


@pytest.fixture(scope="module")
def assistant(tiny_model):
    return Assistant(tiny_model)


@pytest.fixture
def png(tmp_path):
    return noise_pngs(tmp_path, ["scene.png"], (60, 90), seed=0)[0]


def test_ask_returns_answer_with_parsed_geometry(assistant, png, monkeypatch):
    answer = assistant.ask(png, "Describe the image.", max_new_tokens=5)
    assert isinstance(answer, Answer) and answer.image_size == (90, 60)
    # The parser turns grid coordinates into pixels of the original (90×60) image.
    monkeypatch.setattr(
        assistant.model,
        "generate_steps",
        _fake_steps(assistant, "<ref>ship</ref><box>100,200,500,1000</box>"),
    )
    answer = assistant.ask(png, "ships", task="detect")
    assert answer.boxes == [{"label": "ship", "box": [9.0, 12.0, 45.0, 60.0], "score": None}]
    data = json.loads(answer.to_json())
    assert data["boxes"][0]["box"] == [9.0, 12.0, 45.0, 60.0] and data["task"] == "detect"
    assert answer.history[-2]["content"].startswith("<image>\n[detect] ships")


def _fake_steps(assistant, text):
    import torch

    ids = assistant.model.tokenizer(text, add_special_tokens=False).input_ids + [
        assistant.model.end_token_id
    ]

    def steps(*args, **kwargs):
        for t in ids:
            yield torch.tensor([t])

    return steps


def test_malformed_model_output_is_reported_not_raised(assistant, png, monkeypatch):
    monkeypatch.setattr(
        assistant.model,
        "generate_steps",
        _fake_steps(assistant, "<box>12,x,99</box> <mask>3x3|1*9</mask>"),
    )
    answer = assistant.ask(png, "ships", task="ground")
    assert answer.parse_errors and answer.boxes == []
    assert answer.raw.startswith("<box>12,x,99</box>")


def test_mask_json_is_coco_rle(assistant, png, monkeypatch):
    monkeypatch.setattr(
        assistant.model, "generate_steps", _fake_steps(assistant, "<mask>2x2|1,0;0*2</mask>")
    )
    answer = assistant.ask(png, "water", task="segment")
    assert (
        answer.mask.shape == (60, 90) and answer.mask[:30, :45].all() and not answer.mask[30:].any()
    )
    rle = json.loads(answer.to_json())["mask"]
    np.testing.assert_array_equal(rle_to_mask(rle), answer.mask)


@pytest.mark.parametrize("shape", [(5, 7), (1, 1), (3, 4)])
def test_rle_round_trip(shape):
    rng = np.random.default_rng(1)
    for _ in range(5):
        mask = rng.random(shape) > 0.5
        np.testing.assert_array_equal(rle_to_mask(mask_to_rle(mask)), mask)


def test_stream_yields_text_then_answer(assistant, png, monkeypatch):
    monkeypatch.setattr(
        assistant.model, "generate_steps", _fake_steps(assistant, "Two ships in a harbour.")
    )
    stream = assistant.ask(png, "Describe.", stream=True)
    assert isinstance(stream, AnswerStream)
    assert "".join(stream) == "Two ships in a harbour."
    assert stream.answer.text == "Two ships in a harbour."


def test_pair_and_history(assistant, png, monkeypatch):
    monkeypatch.setattr(assistant.model, "generate_steps", _fake_steps(assistant, "New buildings."))
    first = assistant.ask([png, png], "", task="change")
    assert first.history[0]["content"].startswith("<image><image>\n[change]")
    follow = assistant.ask([png, png], "How many?", history=first.history)
    assert follow.history[0] == first.history[0] and len(follow.history) == 4


def test_text_only_and_arrays_and_bytes(assistant, png):
    assert isinstance(assistant.ask(None, "What is NDVI?", max_new_tokens=3), Answer)
    arr = np.zeros((40, 40, 3), dtype=np.uint8)
    assert assistant.ask(arr, "Describe.", max_new_tokens=2).image_size == (40, 40)
    assert assistant.ask(png.read_bytes(), "Describe.", max_new_tokens=2).image_size == (90, 60)
    assert assistant.ask(PILImage.open(png), "Describe.", max_new_tokens=2).image_size == (90, 60)


def test_region_task_formats_the_box(assistant, png, monkeypatch):
    monkeypatch.setattr(assistant.model, "generate_steps", _fake_steps(assistant, "A ship."))
    answer = assistant.ask(png, "", task="region", region=[9, 6, 45, 30])
    assert "[region] <box>100,100,500,500</box>" in answer.history[-2]["content"]


def test_bad_input_gets_clear_errors(assistant, png, tmp_path):
    with pytest.raises(ImageNotFoundError):
        assistant.ask(tmp_path / "missing.tif", "Describe.")
    with pytest.raises(ImageSlotMismatchError, match="at most"):
        assistant.ask([png] * 5, "Describe.")
    with pytest.raises(ContextTooLongError, match="shorten"):
        assistant.ask(png, "word " * 2000)
    with pytest.raises(GeoAssistError, match="unknown task"):
        assistant.ask(png, "x", task="dance")
    with pytest.raises(GeoAssistError, match="empty"):
        assistant.ask(png, "   ")


def test_cli_ask_json(png, capsys):
    assert (
        main(
            [
                "ask",
                str(png),
                "Describe the image.",
                "--model",
                "tiny",
                "--json",
                "--max-new-tokens",
                "4",
            ]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert set(data) >= {
        "text",
        "boxes",
        "obboxes",
        "polygons",
        "mask",
        "citations",
        "parse_errors",
        "raw",
    }
    assert data["image_size"] == [90, 60]


def test_cli_prompt_from_stdin_and_file(png, tmp_path, capsys, monkeypatch):
    import io

    from geoassist.commands.core import read_prompt

    monkeypatch.setattr("sys.stdin", io.StringIO("How many ships?\n"))
    assert read_prompt("-") == "How many ships?"
    prompt = tmp_path / "q.txt"
    prompt.write_text("Where is the river?\n")
    assert read_prompt(f"@{prompt}") == "Where is the river?"
    assert read_prompt("plain") == "plain"
    monkeypatch.setattr("sys.stdin", io.StringIO("Describe the image.\n"))
    assert main(["ask", str(png), "-", "--model", "tiny", "--json", "--max-new-tokens", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["image_size"] == [90, 60]
    assert main(["ask", str(png), f"@{prompt}", "--model", "tiny", "--max-new-tokens", "2"]) == 0


def test_cli_errors_are_one_line_and_exit_1(tmp_path, capsys):
    assert main(["ask", str(tmp_path / "nope.png"), "Describe.", "--model", "tiny"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert main(["ask", "x.png", "@" + str(tmp_path / "missing.txt"), "--model", "tiny"]) == 1
    assert main(["ask", "Describe.", "--model", "no-such-model"]) == 1


def test_cli_info(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "tiny" in out and "mini" in out and "SmolLM2" in out


def test_cli_chat_repl(png, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("Describe.\n/json\n/task caption\nagain\n/quit\n"))
    assert main(["chat", str(png), "--model", "tiny", "--max-new-tokens", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("geoassist> ") == 2 and '"boxes"' in out


def test_ask_batch_equals_one_at_a_time(assistant, png):
    arr = np.full((40, 50, 3), 120, dtype=np.uint8)
    requests = [
        {"image": png, "prompt": "Describe."},
        {
            "image": arr,
            "prompt": "A longer question about the fields and the river?",
            "task": "vqa",
        },
        {"image": [png, arr], "prompt": "", "task": "change"},
        {"image": None, "prompt": "What is NDVI?"},
    ]
    batched = assistant.ask_batch(requests, batch_size=3, max_new_tokens=6)
    single = [assistant.ask(**req, max_new_tokens=6) for req in requests]
    assert [a.raw for a in batched] == [a.raw for a in single]
    assert [a.image_size for a in batched] == [(90, 60), (50, 40), (50, 40), None]


def test_cli_task_without_prompt_and_prompt_after_options(png, capsys):
    from geoassist.commands.core import split_inputs

    assert split_inputs([str(png)], "caption") == ([str(png)], "")
    assert split_inputs([str(png), str(png)], "change") == ([str(png), str(png)], "")
    assert split_inputs([str(png), "ships"], "detect") == ([str(png)], "ships")
    assert main(["ask", str(png), "--task", "caption", "--model", "tiny", "--json", "--max-new-tokens", "2"]) == 0
    assert json.loads(capsys.readouterr().out)["task"] == "caption"
    assert main(["ask", str(png), "--model", "tiny", "--max-new-tokens", "2", "Describe the image."]) == 0
