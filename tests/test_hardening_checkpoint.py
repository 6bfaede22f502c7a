"""Damaged checkpoint folders: each is one GeoAssistError naming the file and what to do."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image as PILImage

from geoassist.checkpoint import check_safetensors, create_model, load_checkpoint, save_checkpoint
from geoassist.cli import main
from geoassist.errors import CheckpointError, ConfigError, GeoAssistError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_checkpoint(create_model("tiny"), folder)
    return folder


@pytest.fixture
def copy(saved, tmp_path):
    def make(name: str = "ckpt"):
        target = tmp_path / name
        shutil.copytree(saved, target)
        return target

    return make


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _edit_config(folder, edit) -> None:
    data = json.loads((folder / "config.json").read_text())
    edit(data)
    (folder / "config.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    "relative", ["lm/model.safetensors", "vision.safetensors", "projector.safetensors"]
)
def test_a_truncated_weights_file_is_named(copy, relative):
    folder = copy()
    _truncate(folder / relative)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / relative} is truncated or corrupt")
    assert "copy or download it again, or save the model again" in message
    with pytest.raises(CheckpointError):
        check_safetensors(folder / relative)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d.update(vision="ViT-B-32"), 'vision must be a JSON object of settings, got "ViT-B-32"'),
        (lambda d: d.update(vision=None), "vision must be a JSON object of settings, got null"),
        (lambda d: d.update(lm=[1, 2]), "lm must be a JSON object of settings, got [1, 2]"),
        (
            lambda d: d["vision"].update(image_size=float(d["vision"]["image_size"])),
            "vision.image_size must be an integer, got 32.0 (a decimal number)",
        ),
        (lambda d: d["preprocess"].update(bands="rgb"), "preprocess.bands must be a list of strings"),
        (lambda d: d["lora"].update(enabled="yes"), "lora.enabled must be true or false"),
        (lambda d: d["preprocess"].update(gsd_m="10m"), "preprocess.gsd_m must be a number or null"),
    ],
)  # fmt: skip
def test_config_sections_of_the_wrong_type_are_named(copy, edit, expected):
    folder = copy()
    _edit_config(folder, edit)
    with pytest.raises(ConfigError) as info:
        load_checkpoint(folder)
    message = str(info.value)
    assert message.startswith(f"{folder / 'config.json'}: ") and expected in message, message
    assert message.endswith("fix the file (or save the model again)")


def test_weights_that_do_not_match_the_config_name_the_file(copy):
    folder = copy()
    _edit_config(folder, lambda d: d["vision"].update(layers=d["vision"]["layers"] + 1))
    with pytest.raises(CheckpointError, match=r"vision\.safetensors do not match .*config\.json"):
        load_checkpoint(folder)


def test_a_folder_without_tokenizer_or_lm_is_incomplete(copy):
    folder = copy("no_tokenizer")
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(
        CheckpointError, match=r"has no tokenizer/ folder; the checkpoint is incomplete"
    ):
        load_checkpoint(folder)
    folder = copy("no_lm")
    shutil.rmtree(folder / "lm")
    with pytest.raises(CheckpointError, match=r"has no lm/ folder"):
        load_checkpoint(folder)


def test_damaged_tokenizer_and_lm_config_are_checkpoint_errors(copy):
    folder = copy("bad_tokenizer")
    (folder / "tokenizer" / "tokenizer.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"cannot load the tokenizer in .*bad_tokenizer"):
        load_checkpoint(folder)
    folder = copy("bad_lm_config")
    (folder / "lm" / "config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"lm/config\.json is not valid JSON"):
        load_checkpoint(folder)


def test_the_cli_reports_a_damaged_checkpoint_in_one_line(copy, tmp_path, capsys):
    folder = copy()
    _truncate(folder / "lm" / "model.safetensors")
    image = tmp_path / "scene.png"
    PILImage.fromarray(np.zeros((16, 16, 3), np.uint8)).save(image)
    code = main(["ask", str(image), "Describe the image.", "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "model.safetensors is truncated or corrupt" in err
    assert issubclass(CheckpointError, GeoAssistError) and issubclass(ConfigError, GeoAssistError)
