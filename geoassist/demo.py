"""The demo: GeoAssist answers questions about the shipped examples, beside their exact truth.

The images in ``examples/`` are GeoSynth scenes (examples/README.md says which seed made each),
so every question the demo asks has an exact answer. ``examples/truth.json`` holds the
questions and those answers; it is written from GeoSynth by this module, never by hand::

    python -m geoassist.demo --write-truth      # regenerate examples/truth.json
    python -m geoassist.demo                    # ask the default model (what `make demo` runs)
    python -m geoassist.demo --model runs/x/final

Each answer is printed next to its truth. Short answers (counts, classes, yes/no) are scored by
normalised exact match (eval/normalize.py); captions are shown with a reference and left
unscored, since one reference caption does not make a wrong one. The last line counts the
scored answers that are right.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoassist.atomic import replace_file
from geoassist.errors import GeoAssistError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TRUTH_FILE = "truth.json"
FORMAT = "geoassist-demo-truth/1"


class DemoError(GeoAssistError):
    """The examples or their truth file are missing or do not match GeoSynth."""


@dataclass(frozen=True)
class Example:
    """One shipped example image (or pair) and the GeoSynth call that made it."""

    name: str
    files: tuple[str, ...]
    made_by: str  # the call, as examples/README.md writes it
    seed: int
    scene_class: str | None  # None: a change pair


SHIPPED = (
    Example("residential", ("residential.png",),
            'generate_scene(90011, kind="hr", scene_class="sparse_residential", size=256)', 90011,
            "sparse_residential"),
    Example("farmland", ("farmland.png",),
            'generate_scene(90003, kind="hr", scene_class="farmland", size=256)', 90003, "farmland"),
    Example("change", ("change_before.png", "change_after.png"), "generate_pair(90004, size=256)",
            90004, None),
)  # fmt: skip


def _generate(example: Example):
    from geoassist.synth import generate_pair, generate_scene

    if example.scene_class is None:
        return generate_pair(example.seed, size=256)
    return generate_scene(example.seed, kind="hr", scene_class=example.scene_class, size=256)


def _sentence(text: str) -> str:
    text = " ".join(text.split()).strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _question(prompt: str, truth: Any, *, task: str | None = None, scored: bool = True) -> dict[str, Any]:
    return {"prompt": prompt, "task": task, "truth": truth, "scored": scored}


def truth_of(example: Example) -> dict[str, Any]:
    """The questions the demo asks about ``example`` and their answers, from GeoSynth's annotation."""
    from geoassist.data_recipes.geometry import label_name

    generated = _generate(example)
    ann = generated.annotation
    if example.scene_class is None:
        by_type = {qa.question: qa.answer for qa in ann.change_qa}
        questions = [
            _question("", [_sentence(c) for c in ann.change_captions], task="change", scored=False),
            *[_question(q, by_type[q]) for q in ("Was a new road built?", "Was any forest cleared?",
                                                 "How many buildings were built?")],
        ]  # fmt: skip
    else:
        things = ann.things()
        count_of = {cls: sum(o.cls == cls for o in things) for cls in {o.cls for o in things}}
        questions = []
        if example.name == "residential":
            questions.append(_question("How many buildings are there?", str(count_of.get("building", 0))))
        counts = [qa for qa in ann.vqa if qa.type == "count"]
        if example.name == "farmland" and counts:
            questions.append(_question(counts[0].question, counts[0].answer))
        questions.append(_question("", label_name(ann.scene_class), task="classify"))
        questions.append(_question("", [_sentence(c) for c in ann.captions], task="caption", scored=False))
    return {"name": example.name, "files": list(example.files), "made_by": example.made_by, "questions": questions}


def build_truth() -> dict[str, Any]:
    return {
        "format": FORMAT,
        "note": "written by `python -m geoassist.demo --write-truth` from GeoSynth; do not edit",
        "examples": [truth_of(e) for e in SHIPPED],
    }


def write_truth(folder: Path = EXAMPLES) -> Path:
    """Write ``truth.json`` beside the examples (atomically)."""
    return replace_file(Path(folder) / TRUTH_FILE, json.dumps(build_truth(), indent=2, ensure_ascii=False) + "\n")


def read_truth(folder: Path = EXAMPLES) -> dict[str, Any]:
    path = Path(folder) / TRUTH_FILE
    if not path.is_file():
        raise DemoError(f"{path} is missing; write it with `python -m geoassist.demo --write-truth`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DemoError(f"{path} is not JSON ({exc}); rewrite it with `python -m geoassist.demo --write-truth`") from None
    if data.get("format") != FORMAT:
        raise DemoError(f"{path} is not a {FORMAT} file; rewrite it with `python -m geoassist.demo --write-truth`")
    return data


def is_right(answer: str, truth: Any) -> bool:
    from geoassist.eval.normalize import exact_match

    return exact_match(answer, truth)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return f"{value[0]}  (1 of {len(value)} references)" if value else "(no reference)"
    return str(value)


def run_demo(model: str | None = None, folder: Path = EXAMPLES, out=sys.stdout) -> tuple[int, int]:
    """Ask every truth-file question and print answer and truth side by side; returns (right, scored)."""
    from geoassist.assistant import Assistant
    from geoassist.util import quiet_transformers

    truth = read_truth(folder)
    quiet_transformers()
    assistant = Assistant.from_pretrained(model) if model else Assistant.from_pretrained()
    right = scored = 0
    for example in truth["examples"]:
        files = [str(Path(folder) / f) for f in example["files"]]
        missing = [f for f in files if not Path(f).is_file()]
        if missing:
            raise DemoError(f"example image(s) {missing} are missing; the demo needs the repository's examples/")
        image = files[0] if len(files) == 1 else files
        print(f"\n== {' + '.join(example['files'])}  ({example['made_by']})", file=out)
        for q in example["questions"]:
            options = {"task": q["task"]} if q["task"] else {}
            answer = assistant.ask(image, q["prompt"], **options).text.strip()
            asked = q["prompt"] or f"[{q['task']}]"
            if q["scored"]:
                ok = is_right(answer, q["truth"])
                right, scored = right + ok, scored + 1
                verdict = "right" if ok else "WRONG"
            else:
                verdict = "not scored"
            print(f"  {asked}", file=out)
            print(f"    truth : {_shown(q['truth'])}", file=out)
            print(f"    model : {answer}", file=out)
            print(f"    ({verdict})", file=out)
    print(f"\n{right} of {scored} scored answers right (captions are shown with a reference, not scored)", file=out)
    return right, scored


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m geoassist.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="a published name, preset or checkpoint folder (default: geoassist-mini)")
    parser.add_argument("--examples", type=Path, default=EXAMPLES, help="the examples folder")
    parser.add_argument("--write-truth", action="store_true", help="regenerate truth.json from GeoSynth and exit")
    args = parser.parse_args(argv)
    try:
        if args.write_truth:
            print(f"wrote {write_truth(args.examples)}")
            return 0
        run_demo(args.model, args.examples)
    except GeoAssistError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
