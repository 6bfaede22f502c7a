"""`geoassist train`: run or resume one training stage from a YAML config."""

from __future__ import annotations

import yaml

from geoassist.errors import ConfigError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train or resume a stage (0 encoder, 1 alignment, 2 instruction tuning) from a YAML config",
        description="Runs the stage described by CONFIG (or a shipped --preset). A run resumes from the last "
        "checkpoint in its out_dir automatically. Multi-GPU: accelerate launch --config_file "
        "<geoassist>/train/accelerate/ddp.yaml -m geoassist.train CONFIG.",
    )
    p.add_argument("config", nargs="?", help="run config (YAML)")
    p.add_argument("--preset", help="a shipped config by name (see --list)")
    p.add_argument("--list", action="store_true", help="list the shipped configs and exit")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.max_steps=50 (values are YAML)",
    )
    p.add_argument("--out", help="output folder (overrides out_dir)")
    p.add_argument(
        "--no-resume", action="store_true", help="start over even if out_dir has checkpoints"
    )
    p.set_defaults(func=run_train)


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes KEY=VALUE, got {pair!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def run_train(args) -> int:
    from geoassist.train.config import load_train_config, shipped_configs

    shipped = shipped_configs()
    if args.list:
        for name, path in sorted(shipped.items()):
            first = path.read_text().splitlines()[0].lstrip("# ")
            print(f"{name:<14} {first}")
        return 0
    if bool(args.config) == bool(args.preset):
        raise ConfigError(
            "give either a CONFIG file or --preset NAME (geoassist train --list shows the presets)"
        )
    if args.preset:
        if args.preset not in shipped:
            raise ConfigError(
                f"no shipped training config {args.preset!r}; available: {', '.join(sorted(shipped))}"
            )
        path = shipped[args.preset]
    else:
        path = args.config
    overrides = _overrides(args.set)
    from geoassist.extras import require

    require("torch.utils.tensorboard", "train", "geoassist train")  # before any work starts
    from geoassist.train.pipeline import is_pipeline, load_pipeline, run_pipeline

    if is_pipeline(path):
        if args.out:
            overrides["workdir"] = args.out
        pipeline = load_pipeline(path, overrides)
        summary = run_pipeline(pipeline)
        print(f"pipeline done; summary in {pipeline.workdir}/summary.json")
        for name, score in (summary.get("scores") or {}).items():
            metrics = {k: v for k, v in (score.get("metrics") or {}).items() if isinstance(v, (int, float))}
            print(f"  {name}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        return 0
    if args.out:
        overrides["out_dir"] = args.out
    config = load_train_config(path, overrides)

    from geoassist.train.trainer import train

    result = train(config, resume=not args.no_resume)
    if result.stopped_by_signal:
        print(
            f"stopped at step {result.step}; resume with the same command (checkpoint in {result.out_dir}/checkpoints)"
        )
        return 130
    print(f"done: step {result.step}; model saved to {result.final}")
    for task, metrics in result.scores.items():
        print(f"  {task}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
    return 0
