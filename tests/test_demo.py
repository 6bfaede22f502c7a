"""The demo tells the truth: examples/truth.json is GeoSynth's exact truth for the shipped
examples, and the demo prints every answer beside it."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from geoassist import demo


def test_truth_file_is_what_geosynth_says():
    shipped = demo.read_truth()
    assert shipped == json.loads(json.dumps(demo.build_truth()))
    counts = {e["name"]: e["questions"][0]["truth"] for e in shipped["examples"]}
    assert counts["residential"] == "5"  # examples/README.md: 5 buildings


def test_the_examples_are_the_scenes_the_truth_describes():
    for example in demo.SHIPPED:
        generated = demo._generate(example)
        arrays = [generated.rgb] if example.scene_class else list(generated.images)
        for name, array in zip(example.files, arrays, strict=True):
            shipped = np.asarray(Image.open(demo.EXAMPLES / name).convert("RGB"))
            assert np.array_equal(np.asarray(array)[..., :3], shipped), name


def test_a_missing_or_foreign_truth_file_is_explained(tmp_path):
    with pytest.raises(demo.DemoError, match="--write-truth"):
        demo.read_truth(tmp_path)
    (tmp_path / "truth.json").write_text('{"format": "other"}')
    with pytest.raises(demo.DemoError, match="--write-truth"):
        demo.read_truth(tmp_path)
    written = demo.write_truth(tmp_path)
    assert demo.read_truth(tmp_path) == json.loads(written.read_text())


def test_short_answers_are_scored_by_normalised_exact_match():
    assert demo.is_right("Five.", "5")
    assert demo.is_right("Yes", "yes")
    assert not demo.is_right("4", "5")
    assert not demo.is_right("", "farmland")


@pytest.mark.slow
def test_make_demo_prints_each_answer_beside_its_truth():
    out = io.StringIO()
    right, scored = demo.run_demo(out=out)
    text = out.getvalue()
    truth = demo.read_truth()
    questions = [q for e in truth["examples"] for q in e["questions"]]
    assert text.count("    truth : ") == len(questions) == text.count("    model : ")
    for q in questions:
        shown = q["truth"][0] if isinstance(q["truth"], list) else q["truth"]
        assert f"    truth : {shown}" in text
    assert scored == sum(q["scored"] for q in questions) and 0 <= right <= scored
    assert text.count("(right)") == right and text.count("(WRONG)") == scored - right
    assert f"{right} of {scored} scored answers right" in text
