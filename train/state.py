"""Resumable training state, written without pickles.

A training checkpoint ``<out>/checkpoints/step-000123/`` holds:

- ``trainable.safetensors`` — every parameter that trains (the rest is rebuilt
  from the run's starting model);
- ``optimizer.safetensors`` + ``optimizer.json`` — the optimizer's tensors and
  its param groups;
- ``rng.safetensors`` + ``state.json`` — torch RNG states, Python/numpy RNG
  states, the step, the batches consumed and the scheduler's state.

Folders are written under a temporary name and renamed, so a crash leaves the
previous checkpoint intact; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from geoassist.atomic import make_temp_dir, replace_folder
from geoassist.errors import CheckpointError

PREFIX = "step-"


def step_folder(out_dir: Path, step: int) -> Path:
    return Path(out_dir) / "checkpoints" / f"{PREFIX}{step:07d}"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return None
    done = sorted(
        p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()
    )
    return done[-1] if done else None


def _optimizer_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            name = f"{index}.{key}"
            if torch.is_tensor(value):
                tensors[name] = value.detach().cpu().contiguous()
            else:
                scalars[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for name, value in meta["scalars"].items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    py_state = random.getstate()
    meta = {
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }
    return tensors, meta


def _restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("cuda.")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, keys, *rest = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss = meta["python"]
    random.setstate((version, tuple(internal), gauss))


def save_training_state(
    out_dir: str | Path,
    *,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    extra: dict[str, Any],
    keep_last: int,
) -> Path:
    target = step_folder(Path(out_dir), step)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_temp_dir(target)
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in trainable.items()},
            str(tmp / "trainable.safetensors"),
        )
        opt_tensors, opt_meta = _optimizer_tensors(optimizer)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        (tmp / "optimizer.json").write_text(json.dumps(opt_meta))
        rng_tensors, rng_meta = _rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        state = {"step": step, "scheduler": scheduler.state_dict(), "rng": rng_meta, **extra}
        (tmp / "state.json").write_text(json.dumps(state, default=_jsonable))
        replace_folder(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    _prune(target.parent, keep_last)
    return target


def _jsonable(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.tolist()
    if callable(value):
        return None  # LambdaLR keeps its functions here; they are rebuilt from the config
    raise TypeError(f"cannot store {type(value).__name__} in the training state")


def _prune(folder: Path, keep_last: int) -> None:
    done = sorted(
        p for p in folder.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file()
    )
    for old in done[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def load_training_state(
    folder: str | Path, *, model: torch.nn.Module, optimizer, scheduler
) -> dict[str, Any]:
    """Restore parameters, optimizer, scheduler and RNG from ``folder``; returns ``state.json``."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
        trainable = load_file(str(folder / "trainable.safetensors"))
        opt_tensors = load_file(str(folder / "optimizer.safetensors"))
        opt_meta = json.loads((folder / "optimizer.json").read_text())
        rng_tensors = load_file(str(folder / "rng.safetensors"))
    except (OSError, json.JSONDecodeError, Exception) as exc:
        raise CheckpointError(
            f"training checkpoint {folder} is incomplete or corrupt ({exc}); delete it to resume from the previous one"
        ) from exc
    params = dict(model.named_parameters())
    missing = [k for k in trainable if k not in params]
    if missing:
        raise CheckpointError(
            f"training checkpoint {folder} does not match the model (e.g. {missing[0]}); was the config changed?"
        )
    with torch.no_grad():
        for name, value in trainable.items():
            params[name].copy_(value)
    _restore_optimizer(optimizer, opt_tensors, opt_meta)
    scheduler_state = {k: v for k, v in state["scheduler"].items() if k != "lr_lambdas"}
    scheduler.load_state_dict({**scheduler.state_dict(), **scheduler_state})
    _restore_rng(rng_tensors, state["rng"])
    return state
