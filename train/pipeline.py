"""Multi-step training pipelines: data recipes → stages 0–2 → evaluation → a shipped model.

A pipeline YAML (``pipeline: NAME`` at the top) lists data steps, training
stages and evaluations. Every step is skipped when its output is already
complete, and each stage resumes from its last checkpoint, so re-running the
same command after an interruption continues where it stopped.

Strings in the YAML may use ``{workdir}``, ``{data:NAME}`` (a data step's
output folder) and ``{prev}`` (the previous stage's trained model).

A longer run continues from committed weights instead of starting over: ``init_from`` (e.g.
``geoassist train --preset geoassist-mini --set init_from=geoassist-mini --set seed_offset=1``)
skips the stages before the first stage-2 entry, starts that one from those weights, and
``seed_offset`` moves every stage's seed and the GeoSynth seed of data steps marked
``vary_seed`` (new scenes; their folder is suffixed ``-seed<N>``), so the continuation trains
on a new seed range while the evaluation sets stay fixed. Every stage keeps the weights of its
best validation loss when it sets ``val_every`` (train/trainer.py); the evaluation then scores
the final model once. ``--set`` takes dotted keys into the YAML (``stages.2.optim.max_steps=50``).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from geoassist.errors import ConfigError
from geoassist.sysinfo import peak_rss_mb
from geoassist.train.config import _from_dict, config_from_dict

logger = logging.getLogger(__name__)


@dataclass
class DataStep:
    name: str
    recipe: str
    src: str
    options: dict[str, Any] = field(default_factory=dict)
    splits: list[str] | None = None
    optional: bool = False  # skip (and say so in the card) when src is missing, e.g. academic samples
    vary_seed: bool = False  # a GeoSynth step whose seed moves with the pipeline's seed_offset
    workers: int = 1  # conversion processes (data_recipes.build)


@dataclass
class EvalStep:
    task: str
    data: str
    split: str | None = None
    limit: int | None = None
    name: str | None = None
    # Real datasets (geoassist.splits) are scored on this side of the committed real-data split.
    real_split: str = "test"
    # Other sources (your own data): only the images a training entry with this holdout skipped.
    holdout: float = 0.0
    # Blind control asked beside every accuracy (docs/EVAL.md): shuffled, blank, both or none.
    control: str | None = "shuffled"

    def __post_init__(self) -> None:
        if self.real_split not in ("train", "val", "test"):
            raise ConfigError(f"evaluation[].real_split is train, val or test, got {self.real_split!r}")
        if self.control in ("none", ""):
            self.control = None
        if self.control not in (None, "shuffled", "blank", "both"):
            raise ConfigError(f"evaluation[].control is shuffled, blank, both or none, got {self.control!r}")


@dataclass
class PipelineConfig:
    pipeline: str
    workdir: str
    data: list[DataStep]
    stages: list[dict[str, Any]]
    evaluation: list[EvalStep] = field(default_factory=list)
    ship_to: str | None = None
    ship_half: bool = True
    card: dict[str, Any] = field(default_factory=dict)
    init_from: str | None = None  # continue from these weights (a folder or a published name)
    seed_offset: int = 0  # a continuation's new seed range (stage seeds, vary_seed data steps)

    def __post_init__(self) -> None:
        self.data = [s if isinstance(s, DataStep) else _from_dict(DataStep, s, "data[].") for s in self.data]
        self.evaluation = [e if isinstance(e, EvalStep) else _from_dict(EvalStep, e, "evaluation[].") for e in self.evaluation]
        if not self.stages:
            raise ConfigError("a pipeline needs at least one stage")
        names = [s.name for s in self.data]
        if len(set(names)) != len(names):
            raise ConfigError(f"data step names must be unique: {names}")
        if self.init_from is not None and not any(int(s.get("stage", -1)) == 2 for s in self.stages):
            raise ConfigError("init_from continues the first stage-2 entry, and this pipeline has none")
        if self.seed_offset < 0:
            raise ConfigError("seed_offset must be >= 0")


def is_pipeline(path: str | Path) -> bool:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and "pipeline" in data


def load_pipeline(path: str | Path, overrides: dict[str, Any] | None = None) -> PipelineConfig:
    """Read a pipeline YAML; ``overrides`` map dotted keys (list items by index, e.g.
    ``stages.2.optim.max_steps``) to values."""
    data = yaml.safe_load(Path(path).read_text())
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return _from_dict(PipelineConfig, data, "")


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node: Any = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                raise ConfigError(f"--set {dotted}: {key!r} is not an index of a list of {len(node)}")
            node = node[int(key)]
        else:
            node = node.setdefault(key, {})
    if isinstance(node, list):
        if not leaf.isdigit() or int(leaf) >= len(node):
            raise ConfigError(f"--set {dotted}: {leaf!r} is not an index of a list of {len(node)}")
        node[int(leaf)] = value
    elif isinstance(node, dict):
        node[leaf] = value
    else:
        raise ConfigError(f"--set {dotted}: {'.'.join(parents)} is not a mapping or a list")


class _Resolver:
    def __init__(self, config: PipelineConfig):
        self.workdir = Path(config.workdir)
        self.data = {
            s.name: self.workdir / "data" / (
                f"{s.name}-seed{config.seed_offset}" if s.vary_seed and config.seed_offset else s.name
            )
            for s in config.data
        }  # fmt: skip
        self.prev: str | None = None

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v) for v in value]
        if not isinstance(value, str):
            return value

        def sub(match: re.Match) -> str:
            key = match.group(1)
            if key == "workdir":
                return str(self.workdir)
            if key == "prev":
                if self.prev is None:
                    raise ConfigError("{prev} used before any stage has run")
                return self.prev
            if key.startswith("data:"):
                name = key[5:]
                if name not in self.data:
                    raise ConfigError(f"unknown data step {name!r} in {value!r}")
                return str(self.data[name])
            return match.group(0)

        return re.sub(r"\{([a-z_]+(?::[A-Za-z0-9_\-]+)?)\}", sub, value)


def run_pipeline(config: PipelineConfig) -> dict[str, Any]:
    """Run every step that is not complete yet; returns the summary written to ``summary.json``."""
    from geoassist.data_recipes import build, read_manifest

    workdir = Path(config.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    resolve = _Resolver(config)
    summary_path = workdir / "summary.json"
    summary: dict[str, Any] = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.setdefault("data", {})
    summary.setdefault("stages", {})

    for step in config.data:
        out = resolve.data[step.name]
        src = Path(resolve(step.src)).expanduser()
        if (out / "manifest.json").is_file():
            logger.info("data %s: already built at %s", step.name, out)
        elif step.optional and step.recipe != "geosynth" and not src.exists():
            logger.warning("data %s: %s not found, skipped", step.name, src)
            summary["data"][step.name] = {"skipped": f"{src} not found"}
            continue
        else:
            start = time.perf_counter()
            options = resolve(step.options)
            if step.vary_seed and config.seed_offset:
                options = {**options, "seed": _step_seed(step) + config.seed_offset}
            build(step.recipe, src, out, splits=step.splits, options=options, workers=step.workers)
            logger.info("data %s: built in %.0f s", step.name, time.perf_counter() - start)
        manifest = read_manifest(out)
        summary["data"][step.name] = {
            "recipe": step.recipe,
            "written": manifest.get("written"),
            "by_task": manifest.get("by_task"),
            "by_split": manifest.get("by_split"),
            "src": str(src),
        }
        _write_json(summary_path, summary)

    from geoassist.train.trainer import train

    skipped_data = {n for n, s in summary["data"].items() if "skipped" in s}
    final = None
    first = _first_stage(config)
    if config.init_from is not None:
        resolve.prev = str(config.init_from)
        logger.info("continuing from %s: stages before %d skipped", config.init_from, first)
    for index, raw_stage in enumerate(config.stages):
        if index < first:
            continue
        stage_dir = workdir / f"stage{index}"
        stage = resolve(raw_stage)
        stage = _drop_skipped(stage, resolve, skipped_data)
        stage.setdefault("out_dir", str(stage_dir))
        if index == first and config.init_from is not None:
            stage["model"] = str(config.init_from)
        if config.seed_offset:
            stage["seed"] = int(stage.get("seed", 0)) + config.seed_offset
        train_config = config_from_dict(stage)
        final = Path(train_config.out_dir) / "final"
        if (final / "config.json").is_file():
            logger.info("stage %d: already trained (%s)", index, final)
        else:
            result = train(train_config)
            if result.stopped_by_signal:
                _write_json(summary_path, summary)
                raise KeyboardInterrupt(f"stopped during stage {index}; run the same command to resume")
            summary["stages"][str(index)] = _stage_summary(train_config, result)
            _write_json(summary_path, summary)
        resolve.prev = str(final)

    scores = _evaluate(config, resolve, final, summary)
    summary["scores"] = scores
    _write_json(summary_path, summary)
    if config.ship_to:
        _ship(config, final, summary)
    return summary


def _first_stage(config: PipelineConfig) -> int:
    """The index of the first stage to run: 0, or with ``init_from`` the first stage-2 entry."""
    if config.init_from is None:
        return 0
    return next(i for i, s in enumerate(config.stages) if int(s.get("stage", -1)) == 2)


def _step_seed(step: DataStep) -> int:
    from geoassist.data_recipes.recipes.geosynth import parse_spec

    return int(parse_spec(step.src, step.options)["seed"])


def _drop_skipped(stage: dict[str, Any], resolve: _Resolver, skipped: set[str]) -> dict[str, Any]:
    """Remove training and validation sources whose (optional) data step was skipped."""
    if not skipped:
        return stage
    gone = {str(resolve.data[name]) for name in skipped}
    data = dict(stage.get("data", {}))
    for key in ("train", "val"):
        if key in data:
            data[key] = [e for e in data[key] if (e["path"] if isinstance(e, dict) else e) not in gone]
    return {**stage, "data": data}


def _stage_summary(config, result) -> dict[str, Any]:
    log = Path(config.out_dir) / "log.csv"
    rates = []
    if log.is_file():
        import csv

        rates = [float(r["samples_per_s"]) for r in csv.DictReader(log.open())]
    card = json.loads((Path(config.out_dir) / "final" / "geoassist.json").read_text()).get("card", {})
    return {
        "stage": config.stage,
        "steps": result.step,
        "samples_per_s": round(rates[-1], 3) if rates else None,
        "minutes": card.get("compute_minutes"),
        "final_loss": round(result.losses[-1][1], 4) if result.losses else None,
        "peak_rss_mb": int(peak_rss_mb()),
    }


def _model_fingerprint(final: Path) -> str:
    """A digest of the trained model's weight files (names, sizes and contents)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(final.rglob("*.safetensors")):
        digest.update(str(path.relative_to(final)).encode())
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _evaluate(config: PipelineConfig, resolve: _Resolver, final: Path, summary: dict) -> dict[str, Any]:
    if not config.evaluation:
        return {}
    from geoassist.assistant import Assistant
    from geoassist.data_recipes import load_records
    from geoassist.eval import evaluate

    # Scores belong to one trained model: a re-trained final stage invalidates them all.
    fingerprint = _model_fingerprint(final)
    if summary.get("scores_model") != fingerprint:
        summary["scores"] = {}
        summary["scores_model"] = fingerprint
    assistant = Assistant.from_pretrained(final, device="cpu")
    scores = dict(summary.get("scores") or {})
    for step in config.evaluation:
        name = step.name or f"{step.task}:{step.data}"
        if name in scores:
            continue
        folder = Path(resolve(step.data))
        if not folder.is_dir():
            logger.warning("evaluation %s: %s missing, skipped", name, folder)
            continue
        records, root = load_records(folder, split=step.split)
        records = _evaluation_records(list(records), step)
        if not records:
            logger.warning("evaluation %s: no %s records in %s, skipped", name, step.real_split, folder)
            continue
        report = evaluate(
            step.task, records, assistant, root, out=Path(config.workdir) / "eval" / name.replace(":", "_"),
            limit=step.limit, control=step.control,
        )  # fmt: skip
        scores[name] = score_entry(report)
        summary["scores"] = scores
        _write_json(Path(config.workdir) / "summary.json", summary)
    return scores


def score_entry(report: dict[str, Any]) -> dict[str, Any]:
    """What the summary and the card keep of a report: metrics, per-type accuracies with their
    95 % intervals and visual gains, and each blind control's metrics and gains."""

    def kept(field_name: str) -> bool:
        base = field_name.removesuffix("_ci95")
        return base in ("accuracy", "lenient", "score") or base.startswith("visual_gain_") or field_name == "n"

    by_type = {k: {m: v for m, v in d.items() if kept(m)} for k, d in (report.get("by_type") or {}).items()}
    # a report of several tasks (eval synth) also keeps each task's question types, e.g. "vqa.presence"
    for task, sub in (report.get("tasks") or {}).items():
        for kind, d in ((sub or {}).get("by_type") or {}).items():
            by_type[f"{task}.{kind}"] = {m: v for m, v in d.items() if kept(m)}
    entry = {"n": report.get("n"), "metrics": report.get("metrics"), "by_type": by_type}
    controls = {
        name: {"n": report[f"control_{name}"]["n"], "metrics": report[f"control_{name}"]["metrics"],
               "visual_gain": report[f"control_{name}"]["visual_gain"]}
        for name in ("shuffled", "blank") if f"control_{name}" in report
    }  # fmt: skip
    if controls:
        entry["controls"] = controls
    return entry


def _evaluation_records(records: list[dict[str, Any]], step: EvalStep) -> list[dict[str, Any]]:
    """Real datasets: the images of ``step.real_split``; other sources: the held-out fraction."""
    from geoassist.splits import filter_records, has_real_split
    from geoassist.train.data import is_held_out

    records = filter_records(records, step.real_split)
    if step.holdout:
        records = [r for r in records if has_real_split(r["source"]) or is_held_out(r["images"], step.holdout)]
    return records


def _ship(config: PipelineConfig, final: Path, summary: dict) -> None:
    from geoassist.checkpoint import load_checkpoint, save_checkpoint

    model = load_checkpoint(final)
    card = json.loads((final / "geoassist.json").read_text()).get("card", {})
    card = {**card, **config.card}
    card["name"] = config.pipeline
    card["training_data"] = _pipeline_training_text(config, summary) + "\n\n" + card.get("training_data", "")
    if card.get("cumulative_samples_per_task"):
        counts = card["cumulative_samples_per_task"]
        card["training_data"] += (
            f"\n\nAll training behind these weights: {card.get('cumulative_minutes', '?')} min; samples "
            f"seen per task ({sum(counts.values())} in all): "
            + ", ".join(f"{task} {n}" for task, n in counts.items()) + "."
        )
    from geoassist.train.card import card_scores

    card["scores"] = {name: card_scores(s) for name, s in (summary.get("scores") or {}).items()}
    target = Path(config.ship_to)
    save_checkpoint(model, target, card=card, half=config.ship_half)
    logger.info("shipped %s to %s", config.pipeline, target)


def _pipeline_training_text(config: PipelineConfig, summary: dict) -> str:
    used_for: dict[str, list[str]] = {}
    for name in summary["data"]:
        token = "{data:" + name + "}"
        if any(token in json.dumps(stage) for stage in config.stages):
            used_for.setdefault(name, []).append("training")
        if any(token in e.data for e in config.evaluation):
            used_for.setdefault(name, []).append("evaluation")
    lines = ["Data:"]
    for name, d in summary["data"].items():
        role = " and ".join(used_for.get(name, ["unused"]))
        if "skipped" in d:
            lines.append(f"- `{name}`: skipped ({d['skipped']})")
        else:
            lines.append(
                f"- `{name}` (recipe `{d['recipe']}`, {role}): {d['written']} records, by task {d['by_task']}"
            )
    lines.append("\nStages:")
    seen: set[int] = set()
    for _index, s in sorted(summary["stages"].items(), key=lambda item: int(item[0])):
        again = " (continued)" if s["stage"] in seen else ""
        seen.add(s["stage"])
        lines.append(
            f"- stage {s['stage']}{again}: {s['steps']} steps, {s['minutes']} min, "
            f"{s['samples_per_s']} samples/s, final loss {s['final_loss']}, "
            f"peak RSS {s['peak_rss_mb']} MB"
        )
    return "\n".join(lines)


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def ship_only(path: str | Path) -> None:
    """Re-ship an already trained pipeline (e.g. after editing its card)."""
    config = load_pipeline(path)
    summary = json.loads((Path(config.workdir) / "summary.json").read_text())
    final = Path(config.workdir) / f"stage{len(config.stages) - 1}" / "final"
    if not final.is_dir():
        raise ConfigError(f"{final} does not exist; run the pipeline first")
    _ship(config, final, summary)


__all__ = ["PipelineConfig", "is_pipeline", "load_pipeline", "run_pipeline", "ship_only"]
