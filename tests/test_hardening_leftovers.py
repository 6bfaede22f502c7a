"""Crash leftovers: the next export, data build or checkpoint save removes the temporary
folders of a killed run (its process is gone), never a running one's; --out as a file."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_recipes_vqa import make_rsvqa

from geoassist.atomic import make_temp_dir, remove_stale_temp_dirs, replace_folder, temp_name
from geoassist.cli import main
from geoassist.data_recipes import build, read_manifest


@pytest.fixture
def dead_pid():
    """The pid of a process that has exited (as after a kill -9)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture
def live_pid():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def _leftover(target, kind, pid, size=1 << 16):
    folder = target.parent / f"{temp_name(target, kind, pid=pid)}abc123"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\0" * size)
    return folder


def test_only_stale_folders_of_this_target_on_this_host_are_removed(tmp_path, dead_pid, live_pid):
    out = tmp_path / "out"
    dead = _leftover(out, "tmp", dead_pid)
    dead_scratch = _leftover(out, "scratch", dead_pid)
    live = _leftover(out, "tmp", live_pid)
    other_target = _leftover(tmp_path / "other", "tmp", dead_pid)
    other_host = tmp_path / f".out.tmp-ffffff-{dead_pid}-abc123"
    other_host.mkdir()
    mine = tmp_path / ".out.tmp-legacy"  # not a name this module writes
    mine.mkdir()
    removed = remove_stale_temp_dirs(out)
    assert sorted(removed) == sorted([dead, dead_scratch])
    assert not dead.exists() and not dead_scratch.exists()
    assert live.exists() and other_target.exists() and other_host.exists() and mine.exists()


def test_replace_folder_keeps_one_complete_folder(tmp_path):
    out = tmp_path / "out"
    for version in ("1", "2"):
        new = make_temp_dir(out)
        (new / "v").write_text(version)
        replace_folder(new, out)
        assert (out / "v").read_text() == version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_removes_a_killed_exports_leftovers(tmp_path, dead_pid, live_pid, capsys):
    out = tmp_path / "llava"
    dead = _leftover(out, "tmp", dead_pid, size=1 << 20)
    dead_old = _leftover(out, "old", dead_pid)
    live = _leftover(out, "tmp", live_pid)
    # The clean-up comes first, before the model is even resolved (a full export of a tiny
    # model through the same temporary folders is in test_export.py).
    assert main(["export", "no-such-model", "--out", str(out)]) == 1
    assert "no model found for 'no-such-model'" in capsys.readouterr().err
    assert not dead.exists() and not dead_old.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_export_to_a_file_is_one_clear_error(tmp_path, capsys):
    from geoassist.export import ExportError, export_hf_llava

    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"mine")
    code = main(["export", "tiny", "--out", str(a_file), "--force"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "--out is a file, not a folder; give --out a new folder path" in err
    assert a_file.read_bytes() == b"mine"
    with pytest.raises(ExportError, match="--out's parent .*model.bin is a file"):
        export_hf_llava("tiny", a_file / "inside")


def test_data_build_removes_a_killed_builds_leftovers(tmp_path, dead_pid, live_pid):
    make_rsvqa(tmp_path / "src", "hr")
    out = tmp_path / "out"
    dead_tmp = _leftover(out, "tmp", dead_pid)
    dead_scratch = _leftover(out, "scratch", dead_pid)
    live = _leftover(out, "scratch", live_pid)
    build("rsvqa_hr", tmp_path / "src", out)
    assert read_manifest(out)["written"] > 0
    assert not dead_tmp.exists() and not dead_scratch.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", "src", live.name])


def test_a_killed_build_leaves_folders_the_next_build_removes(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    out = tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "from geoassist.data_recipes import build\n"
        "module = sys.modules['geoassist.data_recipes.build']\n"
        "module._publish = lambda tmp, out: os.kill(os.getpid(), signal.SIGKILL)\n"
        f"build('rsvqa_hr', {str(tmp_path / 'src')!r}, {str(out)!r})\n"
    )
    killed = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, timeout=300)
    assert killed.returncode == -9
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out."))
    assert [name.split("-")[0] for name in left] == [".out.scratch", ".out.tmp"]
    build("rsvqa_hr", tmp_path / "src", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "src"]


def test_checkpoint_save_removes_a_killed_saves_leftovers(tmp_path, dead_pid):
    from geoassist.checkpoint import create_model, save_checkpoint

    folder = tmp_path / "ckpt"
    dead = _leftover(folder, "tmp", dead_pid)
    save_checkpoint(create_model("tiny"), folder)
    assert not dead.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
