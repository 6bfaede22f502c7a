"""The model path of `geoassist eval`: batched generation with the tiny model, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from geoassist.assistant import Answer, Assistant
from geoassist.cli import main
from geoassist.eval import evaluate
from geoassist.eval.harness import predict


@pytest.fixture(scope="module")
def chatty_tiny():
    """The tiny model, restricted to lower-case letters and digits so that its answers are not
    empty (the random model otherwise writes only white space)."""
    from conftest import build_tiny

    model = build_tiny(seed=1)
    tokenizer = model.tokenizer
    allowed = [
        i for i in range(256) if tokenizer.decode([i]) in "abcdefghijklmnopqrstuvwxyz0123456789"
    ]
    head = model.lm.get_output_embeddings()
    bias = torch.full((head.weight.shape[0],), -1e4)
    bias[allowed + [model.end_token_id]] = 0.0
    head.register_forward_hook(lambda module, args, out: out + bias.to(out.dtype))
    return Assistant(model)


def write_dataset(root, n=5):
    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        size = (40 + 8 * i, 32 + 4 * i)
        name = f"images/{i}.png"
        (root / "images").mkdir(parents=True, exist_ok=True)
        PILImage.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(
            root / name
        )
        question = [
            "Is there a road?",
            "How many buildings are there?",
            "Is it a rural or an urban area?",
        ][i % 3]
        records.append(
            {
                "id": f"rsvqa_lr:{i}",
                "source": "rsvqa_lr",
                "split": "test",
                "task": "vqa",
                "images": [name],
                "conversations": [{"role": "user", "content": f"<image>\n[vqa] {question}"}],
                "answer": "yes",
                "qtype": ["presence", "count", "rural_urban"][i % 3],
                "targets": {},
                "meta": {},
            }  # fmt: skip
        )
    return records


def test_model_path_matches_one_at_a_time(chatty_tiny, tmp_path):
    records = write_dataset(tmp_path)
    out = tmp_path / "out"
    report = evaluate(
        "rsvqa",
        records,
        chatty_tiny,
        tmp_path,
        out,
        batch_size=2,
        max_new_tokens=4,
        progress=False,
        model_name="tiny",
    )
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 5 and report["n"] == 5 and report["errors"] == 0
    single = {
        r["id"]: chatty_tiny.ask(
            tmp_path / r["images"][0], r["conversations"][0]["content"], max_new_tokens=4
        ).raw
        for r in records
    }
    assert {line["id"]: line["prediction"] for line in lines} == single
    assert all(line["prediction"] for line in lines)
    assert report["generation"]["batch_size"] == 2 and report["generation"]["items_per_second"] > 0
    assert report["model"] == "tiny" and not report["missing_ids"]
    # the same answers scored from the written file give the same report
    again = evaluate("rsvqa", records, out / "predictions.jsonl", tmp_path, progress=False)
    assert again["metrics"] == report["metrics"]


class StubAssistant:
    """Records the requests and answers from a table; ``fail`` images raise like a missing file."""

    def __init__(self, answers, fail=()):
        self.answers, self.fail, self.requests = answers, set(fail), []

    def ask_batch(self, requests, *, batch_size, max_new_tokens):
        from geoassist.errors import ImageNotFoundError

        self.requests.append(list(requests))
        out = []
        for req in requests:
            images = req["image"] if isinstance(req["image"], list) else [req["image"]]
            if any(str(p).endswith(tuple(self.fail)) for p in images):
                raise ImageNotFoundError(f"no such image file: {images[-1]}")
            out.append(Answer(text="", raw=self.answers[req["prompt"]], image_size=(200, 100)))
        return out


def test_requests_hold_the_prompt_as_is_and_all_images(tmp_path):
    records = [
        {
            "id": "levir_cc:1", "source": "levir_cc", "split": "test", "task": "change_qa",
            "images": ["A/1.png", "B/1.png"], "qtype": "change",
            "conversations": [{"role": "user", "content": "<image><image>\n[change_qa] Did anything change?"}],
            "answer": "yes",
        },
        {
            "id": "dior_rsvg:1", "source": "dior_rsvg", "split": "test", "task": "referring",
            "images": ["2.png"], "conversations": [{"role": "user", "content": "<image>\n[refer] the red car"}],
            "answer": "x", "targets": {"boxes": [{"label": "car", "box": [20, 10, 60, 50]}]},
        },
    ]  # fmt: skip
    stub = StubAssistant(
        {
            "<image><image>\n[change_qa] Did anything change?": "Yes",
            "<image>\n[refer] the red car": "<box>100,100,300,500</box>",
        }
    )
    predictions, sizes, errors = predict(stub, records, tmp_path, batch_size=4, progress=False)
    # one batch per answer-length limit: change QA (16 new tokens), referring (48)
    assert [len(batch) for batch in stub.requests] == [1, 1]
    change = stub.requests[0][0]
    assert change["image"] == [str(tmp_path / "A/1.png"), str(tmp_path / "B/1.png")]
    assert predictions == {"levir_cc:1": "Yes", "dior_rsvg:1": "<box>100,100,300,500</box>"}
    assert sizes["dior_rsvg:1"] == (200, 100) and not errors
    # the answer is read at the size the model saw (200 x 100), not from the (absent) file
    report = evaluate("referring", records, stub, tmp_path, progress=False)
    assert report["metrics"]["mean_iou"] == pytest.approx(1.0)


def test_a_failing_request_is_an_error_not_a_crash(tmp_path):
    records = write_dataset(tmp_path, n=3)
    prompts = {r["conversations"][0]["content"]: "yes" for r in records}
    stub = StubAssistant(prompts, fail=["1.png"])
    report = evaluate("rsvqa", records, stub, tmp_path, out=tmp_path / "out", progress=False)
    assert report["errors"] == 1 and report["metrics"]["overall_accuracy"] == pytest.approx(2 / 3)
    lines = [
        json.loads(line)
        for line in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    ]
    assert [("error" in line) for line in lines] == [False, True, False]


def test_cli_model_and_predictions(tmp_path, capsys):
    records = write_dataset(tmp_path, n=4)
    data = tmp_path / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = tmp_path / "run"
    # the records claim to be RSVQA-LR images 0-3, some of them train images of the real split
    args = ["eval", "rsvqa", "--model", "tiny", "--data", str(data), "--out", str(out)]
    args += ["--real-split", "all"]
    assert (
        main([*args, "--max-new-tokens", "2", "--batch-size", "4", "--limit", "3", "--no-progress"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "rsvqa: 3 items" in printed and "items/s" in printed
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 3 and report["limit"] == 3 and report["model"] == "tiny"
    assert {"report.md", "predictions.jsonl", "by_type.png"} <= {p.name for p in out.iterdir()}

    predictions = tmp_path / "theirs.jsonl"
    predictions.write_text(
        "".join(json.dumps({"id": r["id"], "prediction": "Yes"}) + "\n" for r in records[:3])
    )
    assert (
        main(
            [
                "eval",
                "rsvqa",
                "--predictions",
                str(predictions),
                "--data",
                str(data),
                "--out",
                str(tmp_path / "p"),
                "--real-split",
                "all",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "overall_accuracy 0.7500" in printed and "1 record(s) had no prediction" in printed
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert report["missing_ids"] == ["rsvqa_lr:3"]


def test_cli_errors_say_what_to_do(tmp_path, capsys):
    assert (
        main(
            [
                "eval",
                "rsvqa",
                "--predictions",
                "x.jsonl",
                "--data",
                str(tmp_path / "nope"),
                "--out",
                str(tmp_path),
            ]
        )
        == 1
    )
    assert "does not exist" in capsys.readouterr().err
    data = tmp_path / "records.jsonl"
    data.write_text(json.dumps(write_dataset(tmp_path, n=1)[0]) + "\n")
    assert (
        main(
            [
                "eval",
                "caption",
                "--predictions",
                "x.jsonl",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "o"),
                "--real-split",
                "all",
            ]
        )
        == 1
    )
    assert "no records for task 'caption'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(
            ["eval", "rsvqa", "--data", str(data), "--out", str(tmp_path)]
        )  # no model, file or baseline
