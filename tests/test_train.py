"""The trainer's real entry point for a few steps on the tiny model: every stage, logs, checkpoints, exact resume."""

from __future__ import annotations

import csv
import os
import signal

import numpy as np
import pytest
import torch
from conftest import watch_batches
from PIL import Image

import geoassist.train.trainer as trainer
from geoassist.checkpoint import load_checkpoint
from geoassist.errors import ConfigError
from geoassist.train.config import config_from_dict, load_train_config, shipped_configs
from geoassist.train.data import Sample, epoch_batches
from geoassist.train.state import latest_checkpoint

CAPTIONS = [
    "a river crossing green fields",
    "dense houses along a straight road",
    "a harbour with three ships",
    "an airport with two planes",
    "a forest next to a lake",
    "a parking lot full of cars",
    "farmland with square parcels",
    "a stadium beside a highway",
    "bare soil and a quarry",
    "storage tanks near a port",
    "a meadow with scattered trees",
    "an industrial area with warehouses",
]


@pytest.fixture
def samples(tmp_path, monkeypatch):
    """Twelve tiny image–caption records; the trainer's data loading is pointed at them."""
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    root.mkdir()
    records = []
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(root / f"{i}.png")
        caption = CAPTIONS[i]
        records.append(
            {
                "id": f"toy:{i}",
                "source": "toy",
                "split": "train",
                "task": "caption",
                "images": [f"{i}.png"],
                "conversations": [
                    {"role": "user", "content": "<image>\n[caption] Describe the image."},
                    {"role": "assistant", "content": caption},
                ],
                "answer": [caption, caption + " in summer"],
                "qtype": None,
                "targets": {},
                "meta": {},
            }
        )
    monkeypatch.setattr(trainer, "load_samples", lambda *a, **k: [Sample(r, root) for r in records])
    return records


def _config(tmp_path, stage, steps=6, **extra):
    data = {
        "stage": stage,
        "model": "tiny",
        "out_dir": str(tmp_path / f"run{stage}"),
        "data": {"train": ["toy"]},
        "optim": {"max_steps": steps, "batch_size": 4, "lr": 3e-3, "warmup_steps": 1},
        "save_every": 3,
        "log_every": 1,
        "keep_last": 1,
        "seed": 3,
    }
    data.update(extra)
    return config_from_dict(data)


@pytest.mark.parametrize("stage", [0, 1, 2])
def test_each_stage_trains_and_writes_a_loadable_checkpoint(tmp_path, samples, stage, caplog):
    caplog.set_level("INFO", logger="geoassist.train.trainer")
    # Stage 0 sees all twelve pairs in every batch, so its contrastive loss is comparable step to step.
    extra = {"optim": {"max_steps": 8, "batch_size": 12, "lr": 1e-3}} if stage == 0 else {}
    config = _config(tmp_path, stage, steps=8, **extra)
    result = trainer.train(config)
    assert result.step == config.optim.max_steps and not result.stopped_by_signal
    losses = [loss for _, loss in result.losses]
    assert all(np.isfinite(losses))
    first, last = np.mean(losses[:2]), np.mean(losses[-2:])
    assert last < first, f"stage {stage} loss did not fall: {losses}"
    out = tmp_path / f"run{stage}"
    assert {"run_config.yaml", "log.csv", "tensorboard", "checkpoints", "final"} <= {
        p.name for p in out.iterdir()
    }
    assert [p.name for p in (out / "checkpoints").iterdir()] == [
        f"step-{config.optim.max_steps:07d}"
    ]  # keep_last=1
    rows = list(csv.DictReader((out / "log.csv").open()))
    assert [int(r["step"]) for r in rows] == list(range(1, config.optim.max_steps + 1))
    assert any(f"stage {stage}:" in m and "trainable" in m for m in caplog.messages)
    model = load_checkpoint(out / "final")
    card = (out / "final" / "README.md").read_text()
    assert f"Stage {stage}, {config.optim.max_steps} optimizer steps" in card
    assert model.config.name == "tiny"


def test_trainable_parameters_per_stage(tmp_path):
    from geoassist.checkpoint import create_model
    from geoassist.train.stages import build_stage, trainable_parameters

    names = {}
    for stage in (1, 2):
        model = create_model("tiny")
        names[stage] = set(
            trainable_parameters(build_stage(stage, model, _config(tmp_path, stage)))
        )
    assert names[1] and all(n.startswith("model.projector.") for n in names[1])
    assert all(n.startswith("model.projector.") or "lora_" in n for n in names[2])
    assert any("lora_" in n for n in names[2])
    model = create_model("tiny")
    config = _config(tmp_path, 2, stage2={"train_vision_blocks": 1})
    vision = {
        n
        for n in trainable_parameters(build_stage(2, model, config))
        if n.startswith("model.vision")
    }
    assert vision and all(".resblocks.1." in n for n in vision)


def test_sigterm_saves_and_resume_is_exact(tmp_path, samples, monkeypatch):
    reference = trainer.train(_config(tmp_path / "a", 2))
    real_loss = trainer.stage_loss
    calls = {"n": 0}

    def interrupting_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # during step 4: the run must finish the step, save, and stop
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(trainer, "stage_loss", interrupting_loss)
    config = _config(tmp_path / "b", 2)
    stopped = trainer.train(config)
    assert stopped.stopped_by_signal and stopped.step == 4 and stopped.final is None
    assert latest_checkpoint(config.out_dir).name == "step-0000004"
    monkeypatch.setattr(trainer, "stage_loss", real_loss)
    resumed = trainer.train(config)
    assert resumed.losses[0][0] == 5
    assert [loss for _, loss in resumed.losses] == [loss for _, loss in reference.losses[4:]]
    a = load_checkpoint(tmp_path / "a" / "run2" / "final")
    b = load_checkpoint(tmp_path / "b" / "run2" / "final")
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)


def test_epoch_batches_are_deterministic_and_grouped():
    lengths = [5, 100, 7, 90, 6, 95, 8, 99]
    a = epoch_batches(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert a == epoch_batches(lengths, 2, seed=1, epoch=0, group_by_length=True)
    assert a != epoch_batches(lengths, 2, seed=1, epoch=1, group_by_length=True)
    assert sorted(i for b in a for i in b) == list(range(8))
    assert all(
        abs(lengths[b[0]] - lengths[b[1]]) < 20 for b in a
    )  # long with long, short with short


def test_shipped_configs_load():
    from geoassist.train.pipeline import is_pipeline, load_pipeline

    configs = shipped_configs()
    assert configs
    for name, path in configs.items():
        if is_pipeline(path):
            pipeline = load_pipeline(path)
            assert pipeline.stages and pipeline.data, name
            for stage in pipeline.stages:  # each stage validates as a run config once placeholders are filled
                filled = {"out_dir": "x", **stage, "model": "tiny", "data": {**stage["data"], "train": ["d"]}}
                assert config_from_dict(filled).stage in (0, 1, 2), name
        else:
            assert load_train_config(path).stage in (0, 1, 2), name


def test_bad_configs_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="unknown training option"):
        config_from_dict(
            {
                "stage": 2,
                "model": "tiny",
                "out_dir": "x",
                "data": {"train": ["d"]},
                "optim": {"lr_rate": 1},
            }
        )
    with pytest.raises(ConfigError, match="data.train"):
        config_from_dict({"stage": 2, "model": "tiny", "out_dir": "x", "data": {"train": []}})
    path = tmp_path / "c.yaml"
    path.write_text("stage: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config(path)


def test_shipped_accelerate_configs_parse():
    from importlib import resources

    import yaml

    folder = resources.files("geoassist.train") / "accelerate"
    kinds = {}
    for path in folder.iterdir():
        if path.name.endswith(".yaml"):
            kinds[path.name] = yaml.safe_load(path.read_text())["distributed_type"]
    assert kinds == {
        "cpu.yaml": "NO",
        "single_gpu.yaml": "NO",
        "ddp.yaml": "MULTI_GPU",
        "fsdp.yaml": "FSDP",
        "deepspeed_zero2.yaml": "DEEPSPEED",
    }


def test_cli_train_runs_a_config(tmp_path, samples, capsys):
    from geoassist.cli import main

    path = tmp_path / "run.yaml"
    path.write_text(
        f"stage: 1\nmodel: tiny\nout_dir: {tmp_path / 'cli'}\ndata: {{train: [toy]}}\n"
        "optim: {max_steps: 2, batch_size: 2}\nlog_every: 1\n"
    )
    assert main(["train", str(path), "--set", "optim.max_steps=3"]) == 0
    assert "done: step 3" in capsys.readouterr().out
    assert main(["train", "--preset", "nope"]) == 1
    assert main(["train", "--list"]) == 0
    assert "mini-stage2" in capsys.readouterr().out


def test_every_batch_is_full():
    for n, size in ((13, 4), (225, 16), (9, 3)):
        for group in (True, False):
            batches = epoch_batches(list(range(n)), size, seed=2, epoch=0, group_by_length=group)
            assert all(len(b) == size for b in batches), (n, size, group)
            assert {i for b in batches for i in b} == set(range(n))
    assert epoch_batches([1, 2], 4, seed=0, epoch=0, group_by_length=False) in ([[0, 1]], [[1, 0]])


_GROUP_RUN = """
import sys
import numpy as np
from PIL import Image
import geoassist.train.trainer as trainer
from geoassist.cli import main
from geoassist.train.data import Sample
root, config = sys.argv[1], sys.argv[2]
import pathlib
root = pathlib.Path(root)
root.mkdir(exist_ok=True)
records = []
for i in range(8):
    Image.fromarray(np.full((32, 32, 3), 20 * i, np.uint8)).save(root / f"{i}.png")
    records.append({"id": f"toy:{i}", "source": "toy", "split": "train", "task": "caption",
        "images": [f"{i}.png"], "conversations": [
            {"role": "user", "content": "<image>\\n[caption] Describe the image."},
            {"role": "assistant", "content": f"scene number {i}"}],
        "answer": f"scene number {i}", "qtype": None, "targets": {}, "meta": {}})
trainer.load_samples = lambda *a, **k: [Sample(r, root) for r in records]
sys.exit(main(["train", config]))
"""


def test_sigterm_to_the_process_group_with_loader_workers_saves(tmp_path):
    """A scheduler signals every process of the job, data-loader workers included."""
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"stage: 1\nmodel: tiny\nout_dir: {out}\n"
        "data: {train: [toy], num_workers: 1}\n"
        "optim: {max_steps: 100000, batch_size: 2}\nsave_every: 3\nlog_every: 1\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", _GROUP_RUN, str(tmp_path / "images"), str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while latest_checkpoint(out) is None and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert "killed by signal" not in stderr
    stopped = int(stdout.split("stopped at step ")[1].split(";")[0])
    assert latest_checkpoint(out).name == f"step-{stopped:07d}"


def test_no_val_or_test_image_of_the_real_split_reaches_a_training_batch(tmp_path, monkeypatch):
    """RSVQA-LR and LEVIR-CD in their published layouts, trained through the real entry point:
    every id of every batch is a ``train`` image of the committed real-data split."""
    from test_recipes_change import make_levir_cd_release
    from test_recipes_vqa import make_rsvqa

    from geoassist.data_recipes import build, read_records
    from geoassist.splits import record_split

    make_rsvqa(tmp_path / "rsvqa_src", "lr")
    make_levir_cd_release(tmp_path / "levir_src")
    build("rsvqa_lr", tmp_path / "rsvqa_src", tmp_path / "rsvqa")
    build("levir_cd", tmp_path / "levir_src", tmp_path / "levir")
    records = {r["id"]: r for f in ("rsvqa", "levir") for r in read_records(tmp_path / f)}
    sides = {rid: record_split(r) for rid, r in records.items()}
    # the fake data holds images of every side (RSVQA-LR images 0, 11 and 21 are listed as val
    # and test in the committed file), so a loader that ignored the split would fail below
    assert {"train", "val", "test"} <= set(sides.values())
    held_images = {tuple(r["images"]) for rid, r in records.items() if sides[rid] != "train"}
    assert any(images[0].startswith("Images_LR/") for images in held_images)

    seen: list[str] = []
    watch_batches(monkeypatch, trainer, lambda batch: seen.extend(batch["ids"]))
    config = config_from_dict(
        {
            "stage": 2,
            "model": "tiny",
            "out_dir": str(tmp_path / "run"),
            # holdout is for your own data: real datasets follow the split file instead
            "data": {
                "train": [{"path": str(tmp_path / "rsvqa"), "holdout": 0.5}, str(tmp_path / "levir")],
                "train_split": None,
                "max_length": 192,
            },
            "optim": {"max_steps": 12, "batch_size": 8, "lr": 1e-3, "warmup_steps": 1},
            "lora": {"r": 4, "alpha": 8},
            "save_every": 100,
            "seed": 0,
        }
    )
    trainer.train(config)
    assert len(seen) == 12 * 8
    assert {sides[rid] for rid in seen} == {"train"}
    trained = {tuple(records[rid]["images"]) for rid in seen}
    assert not trained & held_images
    # every train record is in the pool (holdout did not thin the real data)
    pool = {rid for rid, side in sides.items() if side == "train"}
    assert len(pool) <= 12 * 8 and set(seen) == pool


def test_stage1_carries_the_towers_dense_heads_on_for_the_region_decoder(tmp_path, samples):
    """Stage 1 does not train stage 0's dense heads, so they travel beside its checkpoint
    unchanged, and a stage 2 that adds a region decoder can still warm-start from them."""
    from geoassist.checkpoint import create_model, save_checkpoint
    from geoassist.model.dense_heads import (
        DENSE_HEADS_FILE,
        DenseHeads,
        DenseHeadsConfig,
        save_dense_heads,
    )

    model = create_model("tiny")
    tower = save_checkpoint(model, tmp_path / "tower")
    save_dense_heads(DenseHeads(DenseHeadsConfig(feature_path="conv8", width=16), model.vision.width), tower)
    result = trainer.train(_config(tmp_path, 1, steps=1, model=str(tower)))
    carried = result.final / DENSE_HEADS_FILE
    assert carried.read_bytes() == (tower / DENSE_HEADS_FILE).read_bytes()
    # a stage without heads at its source writes none
    plain = save_checkpoint(create_model("tiny"), tmp_path / "plain")
    out = trainer.train(_config(tmp_path, 1, steps=1, model=str(plain), out_dir=str(tmp_path / "p")))
    assert not (out.final / DENSE_HEADS_FILE).exists()
