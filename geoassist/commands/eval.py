"""`geoassist eval`: score a model, a predictions file or a blind baseline on a task."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """Score TASK on the records in --data and write predictions.jsonl, report.json,
report.md and plots to --out. Predictions come from a model (--model, batched generation),
from a JSONL file (--predictions, one {"id": "<record id>", "prediction": "<text>"} per line,
any system's output) or from a blind question-only baseline (--baseline). --data is a recipe
output folder, a raw dataset folder in its published layout (CHOICE and GeoChat-Bench
included), a .jsonl file of records, or with --recipe geosynth a GeoSynth generation spec
such as 'seed=0,size=256'. The protocol is in docs/EVAL.md."""


def register(subparsers) -> None:
    from geoassist.eval.baselines import BASELINES
    from geoassist.eval.harness import EVAL_TASKS
    from geoassist.eval.scorers import GRAMMARS

    p = subparsers.add_parser(
        "eval",
        help="evaluate a model or a predictions file on a benchmark task",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("task", choices=EVAL_TASKS, help="evaluation task")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="checkpoint folder, preset or model name to run")
    source.add_argument(
        "--predictions", type=Path, metavar="FILE", help="JSONL predictions to score (no model)"
    )
    source.add_argument(
        "--baseline", choices=BASELINES, help="blind question-only predictions (VQA tasks)"
    )
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        metavar="DIR",
        help="records: recipe output, raw dataset folder, CHOICE folder or records .jsonl",
    )
    p.add_argument(
        "--recipe", help="recipe that reads a raw --data folder (default: detected from its layout)"
    )
    p.add_argument(
        "--split",
        help="only records of this split (e.g. test, test_phili; synth: test when there is one)",
    )
    p.add_argument(
        "--real-split",
        choices=("test", "val", "train", "all"),
        default="test",
        help="real datasets: score only the images on this side of the committed real-data split "
        "(default test; 'all' scores every image, e.g. to check a reader). Other data is not filtered",
    )
    p.add_argument(
        "--limit", type=int, help="score N records, chosen deterministically by a hash of their ids"
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="output folder for the predictions, report and plots",
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="requests per generate call (default 8)"
    )
    p.add_argument(
        "--max-new-tokens", type=int, help="answer length limit (default depends on the task)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when available)")
    p.add_argument(
        "--grammar",
        choices=GRAMMARS,
        help="read structured answers written in another system's grammar",
    )
    p.add_argument(
        "--spice",
        action="store_true",
        help="also compute SPICE for captions (needs the Stanford models)",
    )
    p.add_argument(
        "--control",
        choices=("blank", "shuffled", "both"),
        help="with --model: ask every record again with a blank image (the data's mean colour) "
        "and/or another record's image (shuffled: the control that counts), and report the "
        "visual gain per type (docs/EVAL.md)",
    )
    p.add_argument(
        "--control-seed", type=int, default=0, help="seed of the shuffled control (default 0)"
    )
    p.add_argument(
        "--ci-resamples",
        type=int,
        default=1000,
        metavar="N",
        help="bootstrap draws (by image) for the 95%% intervals of accuracies and visual gains "
        "(default 1000; 0: no intervals)",
    )
    p.add_argument("--no-plots", action="store_true", help="do not draw the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def _headline(report: dict) -> str:
    metrics = report["metrics"]
    keys = [
        k
        for k in (
            "overall_accuracy",
            "average_accuracy",
            "count_rmse",
            "CIDEr",
            "Bleu_4",
            "acc@0.5",
            "acc@0.5_beyond_class",
            "mean_iou",
            "false_positive_rate",
            "map@0.5",
            "map@0.5_oriented",
            "top1_accuracy",
            "miou",
            "oiou",
            "change_iou",
        )  # fmt: skip
        if metrics.get(k) is not None
    ]
    if report["task"] == "synth":
        parts = [
            f"{sub} {e['metric']} {e['score']:.4f}"
            for sub, e in report["by_type"].items()
            if e["score"] is not None
        ]
    else:
        parts = [f"{k} {metrics[k]:.4f}" for k in keys]
    return ", ".join(parts) or "no metric"


def run_eval(args) -> int:
    from geoassist.eval.data import load_eval_data
    from geoassist.eval.harness import evaluate

    records, image_root = load_eval_data(
        args.data,
        task=args.task,
        recipe=args.recipe,
        split=args.split,
        real_split=None if args.real_split == "all" else args.real_split,
    )
    if args.model:
        from geoassist.assistant import Assistant
        from geoassist.util import quiet_transformers

        quiet_transformers()
        predictor = Assistant.from_pretrained(args.model, device=args.device)
        model_name = args.model
    elif args.baseline:
        from geoassist.eval.baselines import baseline_predictions
        from geoassist.eval.harness import select_records

        selected, _ = select_records(records, args.task)
        predictor = baseline_predictions(selected, args.baseline)
        model_name = f"baseline {args.baseline}"
    else:
        predictor = args.predictions
        model_name = f"predictions file {args.predictions}"
    report = evaluate(
        args.task,
        records,
        predictor,
        image_root,
        args.out,
        limit=args.limit,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        grammar=args.grammar,
        spice=args.spice,
        plots=not args.no_plots,
        progress=not args.no_progress,
        model_name=model_name,
        data_name=str(args.data),
        control=args.control,
        control_seed=args.control_seed,
        ci_resamples=args.ci_resamples,
    )
    missing = len(report["missing_ids"])
    print(f"{args.task}: {report['n']} items, {_headline(report)}")
    for name in ("shuffled", "blank"):
        if f"control_{name}" in report:
            print(f"control {name}: {_headline(report[f'control_{name}'] | {'task': args.task})}")
            gains = report[f"control_{name}"]["visual_gain"]
            shown = ", ".join(
                f"{k} {v:+.4f} [{gains[k + '_ci95'][0]:+.4f}, {gains[k + '_ci95'][1]:+.4f}]"
                if k + "_ci95" in gains
                else f"{k} {v:+.4f}"
                for k, v in gains.items()
                if not k.endswith("_ci95")
            )
            print(f"  visual gain over {name}: {shown or 'none'}")
    if missing:
        print(f"{missing} record(s) had no prediction and count as wrong (listed in report.json)")
    rate = report.get("parse_failure_rate")
    if rate:
        print(f"parse-failure rate {rate:.4f}")
    generation = report.get("generation")
    if generation:
        print(
            f"generation: {generation['items_per_second']} items/s at batch size {generation['batch_size']}"
        )
    print(f"wrote {args.out}/report.md, report.json, predictions.jsonl")
    return 0
