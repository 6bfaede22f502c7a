"""The task registry (geoassist.tasks): lookups, its rules, the docs table, and that prompts,
recipes, eval and the app all read it (a task registered here is picked up everywhere)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from geoassist import tasks
from geoassist.errors import GeoAssistError
from geoassist.tasks import (
    TASKS,
    TaskRegistryError,
    TaskSpec,
    UnknownTaskError,
    check_registry,
    get_task,
    list_tasks,
    merge_rule,
    record_kinds,
    tasks_for_record_kind,
    template_for_record_kind,
)

DOC = Path(__file__).resolve().parents[1] / "docs" / "PROMPTS.md"

# What eval/harness.py and data_recipes held as their own tables before the registry; the
# registry must reproduce them exactly (behaviour stays the same).
OLD_EVAL_TABLE = {
    "rsvqa": {"vqa": "qa", "counting": "qa", "change_qa": "qa"},
    "caption": {"caption": "caption"},
    "region_caption": {"region_caption": "caption"},
    "grounding": {"grounding": "grounding", "referring": "grounding"},
    "referring": {"referring": "grounding", "grounding": "grounding"},
    "detection": {"detection": "detection"},
    "scene_cls": {"scene_cls": "scene_cls"},
    "change_caption": {"change_caption": "caption"},
    "change_qa": {"change_qa": "qa"},
    "refer_seg": {"refer_seg": "refer_seg"},
    "knowledge": {"knowledge_qa": "knowledge"},
    "change_seg": {"change_seg": "change_seg"},  # added with the region decoder
}
OLD_MAX_NEW_TOKENS = {
    "vqa": 16, "counting": 16, "change_qa": 16, "knowledge_qa": 64, "scene_cls": 16,
    "caption": 64, "region_caption": 64, "change_caption": 64, "grounding": 128,
    "referring": 48, "detection": 384, "refer_seg": 512, "change_seg": 512,
}  # fmt: skip
OLD_TEMPLATE_OF_KIND = {
    "caption": "caption", "vqa": "vqa", "counting": "vqa", "scene_cls": "classify",
    "grounding": "ground", "detection": "detect", "referring": "refer",
    "region_caption": "region", "change_caption": "change", "change_qa": "change_qa",
    "refer_seg": "segment", "knowledge_qa": "knowledge", "conversation": None,
    "change_seg": "change_seg",  # the region decoder's change mask (a kind of its own)
}  # fmt: skip


def test_lookup_by_name_alias_case_and_dash():
    assert get_task("detect") is TASKS["detect"]
    assert get_task("scene_cls").name == "classify"
    assert get_task(" Detect-OBB ").name == "detect_obb"
    assert get_task("referring").name == "refer"
    assert list_tasks() == list(TASKS) and list_tasks()[0] == "caption"


def test_unknown_task_lists_the_choices():
    with pytest.raises(UnknownTaskError, match="unknown task 'nope'") as info:
        get_task("nope")
    assert isinstance(info.value, GeoAssistError)
    message = str(info.value)
    assert all(name in message for name in TASKS) and "scene_cls (classify)" in message


def test_record_kinds_map_to_their_tasks():
    assert [t.name for t in tasks_for_record_kind("detection")] == ["detect", "detect_obb"]
    assert tasks_for_record_kind("conversation") == ()
    for kind, task in OLD_TEMPLATE_OF_KIND.items():
        spec = template_for_record_kind(kind)
        assert (spec.name if spec else None) == task, kind
    assert template_for_record_kind("detection", oriented=True).name == "detect_obb"
    assert template_for_record_kind("grounding", oriented=True).name == "ground"
    with pytest.raises(UnknownTaskError, match="unknown record kind 'presence'"):
        template_for_record_kind("presence")
    assert set(record_kinds()) == set(OLD_TEMPLATE_OF_KIND)


def test_every_scorer_exists_and_has_a_headline_metric():
    from geoassist.eval.harness import PRIMARY_METRIC
    from geoassist.eval.scorers import SCORERS

    for spec in TASKS.values():
        assert spec.scorer in SCORERS, spec.name
        assert spec.scorer in PRIMARY_METRIC, spec.name


def test_merge_rules_follow_the_large_scene_answers():
    rules = {name: spec.merge for name, spec in TASKS.items()}
    assert rules["detect"] == rules["detect_obb"] == rules["ground"] == "detections"
    assert rules["segment"] == "mask" and rules["region"] == "single"
    assert rules["caption"] == rules["vqa"] == "text"
    assert rules["change"] == rules["classify"] == "whole"
    assert merge_rule(None) == "text" and merge_rule("referring") == "single"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"merge": "tiles"}, "merge 'tiles'"),
        ({"answer_kind": "essay"}, "answer_kind 'essay'"),
        ({"images": "3"}, "images '3'"),
        ({"template": "[vqa] {arg} {colour}"}, "template fields"),
        ({"template": "vqa: {arg}"}, "tag [vqa]"),
        ({"needs_argument": False}, "{arg} exactly when"),
        ({"scorer": "caption"}, "record kind 'vqa' is scored by 'caption'"),
        ({"aliases": ("scene_cls",)}, "task 'classify': 'scene_cls' already names task 'vqa'"),
        ({"record_kinds": ("conversation",)}, "is a free kind"),
    ],
)
def test_check_registry_names_the_broken_rule(change, message):
    broken = dataclasses.replace(TASKS["vqa"], **change)
    registry = {**TASKS, "vqa": broken}
    if "scorer" in change:  # a second task writing vqa records with another scorer
        registry = {**TASKS, "vqa2": dataclasses.replace(broken, name="vqa2", aliases=(),
                                                         template="[vqa2] {arg}")}  # fmt: skip
    with pytest.raises(TaskRegistryError, match=re.escape(message)):
        check_registry(registry)


def test_the_eval_tables_are_the_old_ones():
    from geoassist.eval.harness import (
        DEFAULT_MAX_NEW_TOKENS,
        DEFAULT_SCORERS,
        EVAL_TASKS,
        TASK_RECORDS,
    )

    for name, table in OLD_EVAL_TABLE.items():
        assert dict(TASK_RECORDS[name]) == table, name
    assert set(EVAL_TASKS) == {*OLD_EVAL_TABLE, "choice", "synth"}
    assert dict(TASK_RECORDS["synth"]) == dict(DEFAULT_SCORERS)
    assert dict(DEFAULT_MAX_NEW_TOKENS) == OLD_MAX_NEW_TOKENS


def test_build_prompt_fills_templates():
    from geoassist.prompts import build_prompt

    assert build_prompt("vqa", "  Is there a river? ") == "[vqa] Is there a river?"
    assert build_prompt("scene_cls", "") == "[classify] What kind of scene is this?"
    assert build_prompt(None, "free text ") == "free text "
    assert build_prompt("region", "", region="<box>1,2,3,4</box>") == (
        "[region] <box>1,2,3,4</box> Describe this region."
    )
    block = "<context>p</context>\n\n"
    assert build_prompt("knowledge", "Why?", context=block) == (
        "[knowledge] <context>p</context>\nQuestion: Why?"
    )
    for task, kwargs, message in [
        ("region", {}, "needs a region"),
        ("knowledge", {}, "needs retrieved passages"),
        ("detect", {}, "needs a prompt"),
        (None, {}, "the prompt is empty"),
        ("nope", {}, "unknown task"),
    ]:
        with pytest.raises(GeoAssistError, match=message):
            build_prompt(task, " ", **kwargs)


def test_docs_table_is_generated_from_the_registry():
    text = DOC.read_text(encoding="utf-8")
    assert tasks.doc_table(text) == tasks.markdown(), (
        "docs/PROMPTS.md's task table differs from the registry; run "
        "`python -m geoassist.tasks --update docs/PROMPTS.md`"
    )
    assert "## Adding a task" in text


def test_update_doc_rewrites_only_the_table(tmp_path, capsys):
    doc = tmp_path / "PROMPTS.md"
    doc.write_text(f"# T\n\nbefore\n\n{tasks.DOC_BEGIN}\n| old |\n{tasks.DOC_END}\n\nafter\n")
    assert tasks.main(["--update", str(doc)]) == 0
    text = doc.read_text()
    assert text.startswith("# T\n\nbefore\n\n") and text.endswith(f"{tasks.DOC_END}\n\nafter\n")
    assert tasks.doc_table(text) == tasks.markdown() and "| old |" not in text
    assert not tasks.update_doc(doc)  # already up to date
    assert tasks.main(["--markdown"]) == 0
    assert "| `segment` | `refer_seg` | `refer_seg` | mask |" in capsys.readouterr().out
    (tmp_path / "bare.md").write_text("no table\n")
    with pytest.raises(GeoAssistError, match="has no task table"):
        tasks.update_doc(tmp_path / "bare.md")


# ---------------------------------------------------------------- adding a task, end to end

HEIGHT = TaskSpec(
    "height", "[height] {arg}", "a height in metres",
    record_kinds=("height_qa",), answer_kind="short", scorer="qa", max_new_tokens=16,
    merge="whole", aliases=("height_qa",),
    label="Estimate a height", hint="e.g. How tall is the tallest building?",
)  # fmt: skip


@pytest.fixture
def with_height(monkeypatch):
    monkeypatch.setitem(TASKS, "height", HEIGHT)
    check_registry()
    return HEIGHT


def test_a_new_task_is_picked_up_by_prompts_recipes_eval_and_app(with_height):
    from geoassist.app.engine import all_task_choices
    from geoassist.data_recipes import make_record, validate_record
    from geoassist.eval.harness import DEFAULT_MAX_NEW_TOKENS, TASK_RECORDS, score, select_records
    from geoassist.prompts import build_prompt

    # prompts
    assert build_prompt("height", "How tall is the tower?") == "[height] How tall is the tower?"
    assert get_task("height_qa") is with_height and merge_rule("height") == "whole"
    # recipes: the record's first turn comes from the template, and the schema accepts the kind
    records = [
        make_record(
            source="towers",
            oid=str(n),
            split="test",
            task="height_qa",
            images=[f"{n}.png"],
            argument="How tall is the tower?",
            answer=answer,
        )
        for n, answer in enumerate(["42", "17"])
    ]
    assert records[0]["conversations"][0]["content"] == "<image>\n[height] How tall is the tower?"
    validate_record(records[1])
    # eval: its own evaluation task, synth, the qa scorer and the token budget
    assert dict(TASK_RECORDS["height_qa"]) == {"height_qa": "qa"}
    assert TASK_RECORDS["synth"]["height_qa"] == "qa" and DEFAULT_MAX_NEW_TOKENS["height_qa"] == 16
    kept, skipped = select_records([*records, {"task": "caption", "id": "x:1"}], "height_qa")
    assert kept == records and skipped == {"caption": 1}
    report, items, _ = score("height_qa", records, {"towers:0": "42", "towers:1": "20"})
    assert report["n"] == 2 and report["metrics"]["overall_accuracy"] == pytest.approx(0.5)
    synth, _, _ = score("synth", records, {"towers:0": "42", "towers:1": "17"})
    assert synth["by_type"]["height_qa"]["score"] == pytest.approx(1.0)
    # the app's menu and the docs table
    assert ("Estimate a height", "height") in [(c.label, c.task) for c in all_task_choices()]
    assert "| `height` | 1 | `[height] {arg}` | a height in metres |" in tasks.markdown()


def test_without_the_entry_nothing_knows_the_task():
    from geoassist.data_recipes import make_record
    from geoassist.data_recipes.schema import RecordError, validate_record
    from geoassist.eval.harness import UnknownTaskError as UnknownEvalTask
    from geoassist.eval.harness import select_records

    assert "height" not in TASKS
    with pytest.raises(UnknownTaskError):
        make_record(source="t", oid="0", split="test", task="height_qa", images=["0.png"],
                    argument="q", answer="1")  # fmt: skip
    record = {"id": "t:0", "source": "t", "split": "test", "task": "height_qa",
              "images": ["0.png"], "answer": "1",
              "conversations": [{"role": "user", "content": "<image>\nq"}]}  # fmt: skip
    with pytest.raises(RecordError, match="unknown task 'height_qa'"):
        validate_record(record)
    with pytest.raises(UnknownEvalTask, match="unknown evaluation task 'height_qa'"):
        select_records([record], "height_qa")


def test_the_data_docs_name_each_record_kinds_template():
    text = (DOC.parent / "DATA.md").read_text(encoding="utf-8")
    table = text[text.index("| record task | template | answer |") :].split("\n\n")[0]
    seen = set()
    for row in table.splitlines()[2:]:
        kinds_cell, template_cell = row.split("|")[1:3]
        template = re.findall(r"`([^`]+)`", template_cell)
        for kind in re.findall(r"`([^`]+)`", kinds_cell):
            spec = template_for_record_kind(kind)
            assert (spec.name if spec else None) == (template[0] if template else None), kind
            seen.add(kind)
    assert seen == set(record_kinds())


def test_the_task_of_a_templated_prompt_is_read_from_its_tag():
    """Evaluation and `geoassist batch` send templated prompts without naming the task; the
    region decoder writes its geometry in the grammar of the task the tag names."""
    from geoassist.tasks import task_of_prompt

    assert task_of_prompt("<image>\n[segment] the lake") == "segment"
    assert task_of_prompt("<image><image>\n[change_seg] Outline what changed.") == "change_seg"
    assert task_of_prompt("[classify] What kind of scene is this?") == "classify"
    assert task_of_prompt("How many ships?") is None
    assert task_of_prompt("[nonsense] x") is None
    assert task_of_prompt("Say [segment] later") is None
