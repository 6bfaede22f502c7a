"""The committed real-data split: its rules, its file and the command that regenerates it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from geoassist import splits
from geoassist.errors import GeoAssistError
from geoassist.splits import (
    SPLIT_FILE,
    SplitError,
    filter_records,
    generate,
    real_split,
    record_image_id,
    record_split,
    split_ids,
)


def _file() -> dict:
    return json.loads(SPLIT_FILE.read_text())


def test_the_committed_file_holds_ids_only_and_every_id_once():
    data = _file()
    assert data["regenerate"].startswith("python -m geoassist.splits --samples")
    assert {"rsvqa_lr", "rsvqa_hr", "ucm", "rsscn7", "levir_cd", "dsifn_cd", "levir_cc"} <= set(
        data["sources"]
    )
    assert {"dota", "isaid", "choice"} <= set(data["sources"])
    for name, entry in data["sources"].items():
        ids = entry["ids"]
        assert set(ids) == {"train", "val", "test"}
        flat = [i for s in ids.values() for i in s]
        assert len(flat) == len(set(flat)), f"{name}: an id on two sides"
        assert all(isinstance(i, str) and not i.endswith((".png", ".tif", ".jpg")) for i in flat)
        assert entry["counts"] == {s: len(v) for s, v in ids.items()}


def test_evaluation_only_sources_never_train():
    for name in ("rsscn7", "dota", "isaid", "choice"):
        assert split_ids(name, "train") == split_ids(name, "val") == set()
        assert split_ids(name, "test")
        assert real_split(name, "an id nobody listed") == "test"
    assert split_ids("dota", "test") == {"P1888"} and split_ids("isaid", "test") == {"P0003"}
    assert len(split_ids("rsscn7", "test")) == 700


def test_uc_merced_is_stratified_by_class():
    test, val, train = (split_ids("ucm", s) for s in ("test", "val", "train"))
    assert (len(test), len(val), len(train)) == (420, 210, 1470)

    def per_class(ids):
        return Counter(i.rstrip("0123456789") for i in ids)

    assert set(per_class(test).values()) == {20} and len(per_class(test)) == 21
    assert set(per_class(val).values()) == {10}


def test_rsvqa_questions_follow_their_image_and_pairs_share_a_side():
    lr_test = split_ids("rsvqa_lr", "test")
    assert len(lr_test) == 6 and len(split_ids("rsvqa_lr", "val")) == 3
    image = sorted(lr_test)[0]
    # the excerpt's and the full release's file names are the same image
    for path in (f"images/{image}.png", f"Images_LR/{image}.tif"):
        for qid in (1, 2):
            record = {"id": f"rsvqa_lr:{qid}", "source": "rsvqa_lr", "images": [path]}
            assert record_split(record) == "test"
    pair = {"source": "levir_cd", "images": ["A/test_2_0000_0000.png", "B/test_2_0000_0000.png"]}
    assert record_image_id(pair) == "test_2_0000_0000"
    # tiles cut from one LEVIR-CD parent image share a side
    assert real_split("levir_cd", "test_2_0000_0000") == real_split("levir_cd", "test_2_0000_0512")
    # CHOICE task folders reuse file names: the id keeps the path
    a = {"source": "choice", "images": ["perception/x/images/325.png"]}
    b = {"source": "choice", "images": ["reasoning/y/images/325.png"]}
    assert record_image_id(a) != record_image_id(b)


def test_unlisted_ids_follow_the_documented_hash_rule():
    fresh = [f"new_image_{i}" for i in range(2000)]
    sides = Counter(real_split("rsvqa_lr", i) for i in fresh)
    assert abs(sides["test"] / 2000 - 0.2) < 0.03 and abs(sides["val"] / 2000 - 0.1) < 0.03
    assert [real_split("rsvqa_lr", i) for i in fresh[:50]] == [
        real_split("rsvqa_lr", i) for i in fresh[:50]
    ]
    # unlisted LEVIR-CD tiles of one parent still share a side
    for parent in range(40):
        assert (
            len({real_split("levir_cd", f"train_{parent}_{r:04d}_0000") for r in (0, 256, 512)})
            == 1
        )


def test_unknown_sources_and_splits_are_explained():
    with pytest.raises(SplitError, match="not a real dataset") as info:
        real_split("geosynth", "0")
    assert isinstance(info.value, GeoAssistError)
    with pytest.raises(SplitError, match="one of train, val, test"):
        split_ids("rsvqa_lr", "holdout")
    with pytest.raises(SplitError, match="has no image"):
        record_image_id({"id": "rsvqa_lr:1", "source": "rsvqa_lr", "images": []})
    # other sources pass through filters untouched
    synth = {"id": "geosynth:1", "source": "geosynth", "images": ["a.png"]}
    assert record_split(synth) is None and filter_records([synth], "test") == [synth]


def test_a_missing_or_broken_file_says_how_to_regenerate(tmp_path):
    with pytest.raises(SplitError, match="python -m geoassist.splits --samples"):
        real_split("rsvqa_lr", "1", split_file=tmp_path / "absent.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"sources": {"rsvqa_lr": {}}}')
    with pytest.raises(SplitError, match="regenerate"):
        real_split("rsvqa_lr", "1", split_file=broken)


def _fake_samples(root: Path) -> None:
    for image_id in range(12):
        path = root / "rsvqa/LR_reduced/images" / f"{image_id}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    for cls in ("forest", "river"):
        for n in range(10):
            path = root / "scenes/ucmerced/UCMerced_LandUse/Images" / cls / f"{cls}{n:02d}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"")
    for name in ("P0001.png", "P0001_instance_id_RGB.png", "P0001_instance_color_RGB.png"):
        path = root / "isaid/val/images" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_the_command_regenerates_the_same_file(tmp_path, capsys):
    _fake_samples(tmp_path / "samples")
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    assert splits.main(["--samples", str(tmp_path / "samples"), "--out", str(out_a)]) == 0
    assert "rsvqa_lr: train 9, val 1, test 2" in capsys.readouterr().out
    splits.main(["--samples", str(tmp_path / "samples"), "--out", str(out_b)])
    assert out_a.read_bytes() == out_b.read_bytes()
    data = json.loads(out_a.read_text())
    assert data["sources"]["isaid"]["ids"]["test"] == ["P0001"]  # masks are not images
    ucm = data["sources"]["ucm"]["ids"]
    assert Counter(i.rstrip("0123456789") for i in ucm["test"]) == {"forest": 2, "river": 2}
    assert real_split("ucm", ucm["test"][0], split_file=out_a) == "test"
    with pytest.raises(SystemExit):
        splits.main(["--samples", str(tmp_path / "nothing"), "--out", str(out_a)])


@pytest.mark.realdata
def test_the_committed_file_is_what_the_command_makes_from_rs_samples(rs_samples):
    assert generate(rs_samples) == _file()


def test_the_split_file_is_package_data():
    """An installed GeoAssist finds the file (a wheel built from the tree ships it: checked by
    hand with `pip wheel`; here, that pyproject's package data names it)."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["geoassist"]
    relative = SPLIT_FILE.relative_to(root / "geoassist").as_posix()
    assert any(fnmatch.fnmatch(relative, p) for p in patterns), patterns
