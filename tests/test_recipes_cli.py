"""`geoassist data list | build | mix | inspect` through the real entry point."""

from __future__ import annotations

import json

import numpy as np
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


def test_data_mix_caps_dedupes_and_refuses_eval_leaks(tmp_path, capsys):
    import yaml

    from geoassist.data_recipes import build, image_root, read_manifest, read_records, resolve_image

    make_rsvqa(tmp_path / "src", "hr")
    build("rsvqa_hr", tmp_path / "src", tmp_path / "hr")
    build("geosynth", "n=2,seed=1,size=96,kinds=hr", tmp_path / "gs")
    config = {
        "seed": 1,
        "sources": [
            {"path": "hr", "splits": ["val"], "weight": 1.0},
            {
                "path": "hr",
                "splits": ["val"],
                "weight": 1.0,
            },  # the same records again: all duplicates
            {"path": "gs", "weight": 0.5, "max_records": 10},
        ],
    }
    (tmp_path / "mix.yaml").write_text(yaml.safe_dump(config))
    assert main(["data", "mix", str(tmp_path / "mix.yaml"), "--out", str(tmp_path / "mixed")]) == 0
    manifest = read_manifest(tmp_path / "mixed")
    # the second listing of the same records is removed whole; GeoSynth is capped at 10
    assert manifest["by_source"]["hr"] == 12 and manifest["by_source"]["hr_2"] == 0
    assert 0 < manifest["by_source"]["gs"] <= 10 and manifest["duplicates_removed"] >= 12
    assert manifest["read"] == manifest["written"] + manifest["rejected_total"]
    root = image_root(tmp_path / "mixed")
    records = list(read_records(tmp_path / "mixed"))
    assert all(resolve_image(r, root).is_file() for r in records)
    # a training split whose images are also evaluated on is refused (or dropped on request)
    leaky = {
        "sources": [{"path": "hr", "splits": ["train"]}],
        "eval": [{"path": "hr", "splits": ["train"]}],
    }
    (tmp_path / "leak.yaml").write_text(yaml.safe_dump(leaky))
    assert main(["data", "mix", str(tmp_path / "leak.yaml"), "--out", str(tmp_path / "leak")]) == 1
    assert "show images of an evaluation split" in capsys.readouterr().err
    assert not (tmp_path / "leak").exists()
    leaky["on_leak"] = "drop"
    (tmp_path / "leak.yaml").write_text(yaml.safe_dump(leaky))
    assert main(["data", "mix", str(tmp_path / "leak.yaml"), "--out", str(tmp_path / "leak")]) == 0
    assert read_manifest(tmp_path / "leak")["written"] == 0


def test_data_inspect_prints_records_and_draws_a_preview(tmp_path, capsys):
    from PIL import Image

    from geoassist.data_recipes import build

    build("geosynth", "n=2,seed=2,size=96,kinds=hr+pair", tmp_path / "gs")
    assert main(["data", "inspect", str(tmp_path / "gs"), "-n", "4"]) == 0
    out = capsys.readouterr().out
    assert "geosynth" in out and "by_task" in out and out.count("— geosynth:") == 4
    preview = Image.open(tmp_path / "gs" / "preview.png")
    assert preview.size[0] == 4 * 256 and np.asarray(preview).std() > 0
