"""`geoassist data list | build | mix | inspect` through the real entry point."""

from __future__ import annotations

import json

from test_recipes_vqa import make_rsvqa

from geoassist.cli import main


def test_data_list_shows_tasks_licence_and_citation(capsys):
    assert main(["data", "list", "--long"]) == 0
    out = capsys.readouterr().out
    assert "rsvqa_lr" in out and "licence:" in out and "citation:" in out
    assert main(["data", "list", "--json"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert {"name", "tasks", "licence", "citation", "layout"} <= set(infos[0])


def test_data_build_prints_counts_and_errors_in_one_line(tmp_path, capsys):
    make_rsvqa(tmp_path / "src", "hr")
    assert (
        main(
            [
                "data",
                "build",
                "rsvqa_hr",
                "--src",
                str(tmp_path / "src"),
                "--out",
                str(tmp_path / "out"),
                "--splits",
                "val",
                "test",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "wrote 24" in out and "by_split: test 12, val 12" in out
    assert (
        main(["data", "build", "nope", "--src", str(tmp_path), "--out", str(tmp_path / "x")]) == 1
    )
    assert "unknown recipe" in capsys.readouterr().err
