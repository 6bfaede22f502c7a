"""The training loop, one for every stage, under ``accelerate``.

The run folder holds everything needed to resume it in a later session:
``run_config.yaml``, ``checkpoints/step-*/`` (see :mod:`geoassist.train.state`),
``log.csv``, ``tensorboard/`` and, at the end, ``final/`` — a GeoAssist
checkpoint with its model card.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import signal
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from geoassist.train.config import TrainConfig
from geoassist.train.data import (
    ConversationDataset,
    ImageTextDataset,
    ResumableBatchSampler,
    collate_conversations,
    collate_image_text,
    load_samples,
    validation_samples,
)
from geoassist.train.stages import build_stage, stage_loss, trainable_parameters
from geoassist.train.state import latest_checkpoint, load_training_state, save_training_state

logger = logging.getLogger(__name__)


class _Stop:
    """Set by SIGTERM/SIGINT; the loop saves a checkpoint at the end of the current step and exits."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum, frame) -> None:
        if self.signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signal = signum
        logger.warning(
            "signal %d received: saving a checkpoint after this step, then stopping", signum
        )


def _ignore_stop_signals(_worker_id: int) -> None:
    """Data-loader workers leave SIGTERM/SIGINT to the main process.

    A scheduler (or Ctrl-C in a terminal) signals the whole process group; a worker that died
    of it would make the main process fail before it could save. The main process stops the
    workers itself when it exits.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def _signals(stop: _Stop):
    previous = {}
    try:
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, stop)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class RunResult:
    out_dir: Path
    final: Path | None  # the saved model (None when the run stopped early)
    step: int
    losses: list[tuple[int, float]]
    stopped_by_signal: bool
    scores: dict[str, Any]
    loop_seconds: float = 0.0  # time spent in the training loop of this invocation
    samples: int = 0  # samples processed in this invocation (all processes)


def _schedule(config: TrainConfig):
    warmup, total, kind = config.optim.warmup_steps, config.optim.max_steps, config.optim.scheduler

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if kind == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress)) if kind == "cosine" else 1.0 - progress

    return factor


def _mixed_precision(setting: str) -> str:
    if setting != "auto":
        return setting
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _hardware() -> str:
    if torch.cuda.is_available():
        return f"{torch.cuda.device_count()}× {torch.cuda.get_device_name(0)}"
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _build_model(config: TrainConfig):
    from geoassist.checkpoint import create_model

    lm_kwargs = {}
    if config.stage == 2 and config.stage2.qlora:
        if not torch.cuda.is_available():
            from geoassist.errors import ConfigError

            raise ConfigError(
                "stage2.qlora needs a CUDA GPU with bitsandbytes; set it to false on this machine"
            )
        from transformers import BitsAndBytesConfig

        lm_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    model = create_model(config.model, lm_kwargs=lm_kwargs or None)
    if config.stage == 2 and config.stage2.region_decoder is not None and model.region_decoder is None:
        from geoassist.train.region_stage import add_region_decoder

        add_region_decoder(model, config.stage2.region_decoder, Path(str(config.model)).expanduser())
    if lm_kwargs:
        from peft import prepare_model_for_kbit_training

        model.lm = prepare_model_for_kbit_training(
            model.lm, use_gradient_checkpointing=config.gradient_checkpointing
        )
    return model


def _datasets(config: TrainConfig, model):
    tasks = config.data.tasks
    if tasks is None and config.stage in (0, 1):
        tasks = ["caption"]
    samples = load_samples(
        config.data.train, split=config.data.train_split, tasks=tasks, seed=config.seed
    )
    if config.stage == 0:
        return ImageTextDataset(samples, model.config), collate_image_text
    collate = collate_conversations(model.pad_token_id)
    if config.stage == 2 and model.region_decoder is not None:
        from geoassist.train.region_data import collate_with_regions

        collate = collate_with_regions(collate)
    return _conversation_dataset(config, model, samples), collate


def _conversation_dataset(config: TrainConfig, model, samples):
    """Stage 1/2 samples: one record per sequence, or packed multi-turn conversations."""
    if config.stage == 2 and config.stage2.packing:
        from geoassist.train.packing import packed_dataset

        return packed_dataset(config, model, samples)
    dataset = ConversationDataset(
        samples,
        model.config,
        model.tokenizer,
        max_length=config.data.max_length,
        captions_only=config.stage == 1,
    )
    if config.stage == 2 and model.region_decoder is not None:
        from geoassist.train.region_stage import region_dataset

        return region_dataset(dataset, model)
    return dataset


def _validation_dataset(config: TrainConfig, model):
    if not config.val_every:
        return None
    tasks = config.data.tasks if config.stage == 2 else ["caption"]
    samples = validation_samples(
        config.data.val, tasks=tasks, seed=config.seed, limit=config.data.val_limit
    )
    return _conversation_dataset(config, model, samples)


def _use_feature_cache(config: TrainConfig, model, datasets: list, accelerator) -> None:
    """Read the frozen tower's features from ``stage2.feature_cache`` (filled once, by the main
    process, for every image the datasets show); a tower that trains bypasses the cache."""
    from geoassist.train.data import image_files
    from geoassist.train.feature_cache import FeatureCache, digests_of, tower_is_frozen

    if not tower_is_frozen(model):
        logger.info("feature cache: the vision tower trains in this stage, so it runs every step")
        return
    cache = FeatureCache(config.stage2.feature_cache, model.vision, model.config.preprocess)
    samples = [s for d in datasets for s in _dataset_samples(d)]
    digests = digests_of(image_files(samples))
    if accelerator.is_main_process:
        model.vision.to(accelerator.device)
        ran = cache.fill(model, {d: p for p, d in digests.items()}, device=accelerator.device)
        logger.info("feature cache: %d images, %d computed now, in %s", len(digests), ran, cache.folder)
    accelerator.wait_for_everyone()
    decoder = model.region_decoder
    # a region decoder whose fine path is the conv8 branch reads the pixels too
    keep_pixels = decoder is not None and decoder.config.feature_path == "conv8"
    for dataset in datasets:
        dataset.images.use_cache(cache, digests, keep_pixels=keep_pixels)


def _dataset_samples(dataset) -> list:
    if hasattr(dataset, "conversations"):
        return [s for conv in dataset.conversations for s in conv.samples]
    return list(dataset.samples)


def train(config: TrainConfig, *, resume: bool = True) -> RunResult:
    """Run (or resume) the training described by ``config``."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = Accelerator(
        mixed_precision=_mixed_precision(config.mixed_precision),
        gradient_accumulation_steps=config.optim.grad_accum,
        cpu=not torch.cuda.is_available(),
    )
    set_seed(config.seed)
    main = accelerator.is_main_process
    if main:
        (out_dir / "run_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))

    model = _build_model(config)
    stage0_sources = None
    if config.stage == 0 and config.stage0.dense is not None:
        from geoassist.train.dense_data import prepare_stage0

        if main:  # one process fills the GeoSynth caches; the others read them
            stage0_sources = prepare_stage0(config, fill=True)
        accelerator.wait_for_everyone()
        if not main:
            stage0_sources = prepare_stage0(config, fill=False)
    module = build_stage(
        config.stage, model, config, stage0_sources.scene_spaces if stage0_sources else None
    )
    if config.gradient_checkpointing:
        model.vision.grad_checkpointing = True
        model.vision.visual.set_grad_checkpointing(True)
        if config.stage == 2:
            model.lm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    if stage0_sources is not None:
        from geoassist.train.dense_data import collate_stage0, stage0_dataset

        dataset, collate_fn = stage0_dataset(config, model, module.dense, stage0_sources), collate_stage0
    else:
        dataset, collate_fn = _datasets(config, model)
    if config.stage == 2 and config.stage2.region_pretrain_steps and model.region_decoder is not None:
        if resume and latest_checkpoint(out_dir) is not None:
            logger.info("region decoder pretraining skipped: the run resumes from a checkpoint")
        else:
            from geoassist.train.region_stage import pretrain_region_decoder

            losses = pretrain_region_decoder(
                model, dataset, steps=config.stage2.region_pretrain_steps,
                batch_size=config.optim.batch_size, seed=config.seed,
            )  # fmt: skip
            if losses:
                logger.info("region decoder pretrained for %d steps: loss %.4g -> %.4g",
                            len(losses), losses[0], losses[-1])  # fmt: skip
    val_dataset = _validation_dataset(config, model) if stage0_sources is None else None
    if config.stage == 2 and config.stage2.feature_cache:
        _use_feature_cache(config, model, [d for d in (dataset, val_dataset) if d is not None], accelerator)
    world = accelerator.num_processes
    sampler = ResumableBatchSampler(
        [dataset.estimated_length(i) for i in range(len(dataset))],
        config.optim.batch_size * world,
        seed=config.seed,
        group_by_length=config.data.group_by_length,
        epoch_indices=getattr(dataset, "epoch_aware", False),
    )
    params = trainable_parameters(module)
    n_trainable = sum(p.numel() for p in params.values())
    n_total = sum(p.numel() for p in module.parameters())
    optimizer = torch.optim.AdamW(
        params.values(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config))

    step, batches_done, elapsed_before = 0, 0, 0.0
    task_counts: Counter[str] = Counter()
    checkpoint = latest_checkpoint(out_dir) if resume else None
    if checkpoint is not None:
        state = load_training_state(
            checkpoint, model=module, optimizer=optimizer, scheduler=scheduler
        )
        step, batches_done = state["step"], state["batches_done"]
        elapsed_before = state.get("elapsed_s", 0.0)
        task_counts.update(state.get("samples_per_task") or {})
        # The learning rate of the next step comes from this run's schedule: a run resumed with
        # more max_steps (or another schedule) must not keep the old run's final rate (0 at
        # the end of a cosine). For an unchanged config this is the rate that was saved.
        factor = _schedule(config)(scheduler.last_epoch)
        for group, base in zip(optimizer.param_groups, scheduler.base_lrs, strict=True):
            group["lr"] = base * factor
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
        logger.info("resumed from %s at step %d", checkpoint, step)
    sampler.resume_at(batches_done)

    # The scheduler is stepped by hand once per optimizer step (its schedule counts optimizer
    # steps), so it is not handed to accelerate, which would step it once per process.
    module, optimizer = accelerator.prepare(module, optimizer)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_ShardedSampler(sampler, accelerator.process_index, world),
        collate_fn=collate_fn,
        num_workers=config.data.num_workers,
        worker_init_fn=_ignore_stop_signals,
    )
    raw_module = accelerator.unwrap_model(module)
    if main:
        logger.info(
            "stage %d: %d samples, %d trainable / %d parameters (%.2f%%), %s, precision %s",
            config.stage,
            len(dataset),
            n_trainable,
            n_total,
            100 * n_trainable / n_total,
            _hardware(),
            accelerator.mixed_precision,
        )
    log = _Log(out_dir, enabled=main, resume_step=step)
    stop = _Stop()
    losses: list[tuple[int, float]] = []
    start_time = time.perf_counter()
    samples_seen = 0
    # stage 0 with dense heads: each loss term's mean over the steps since the last log line
    term_sums: dict[str, float] = defaultdict(float)
    term_counts: dict[str, int] = defaultdict(int)
    batches = iter(loader)
    progress = _progress(main, config.optim.max_steps, step)
    module.train()

    def save(at_step: int) -> None:
        if main:
            save_training_state(
                out_dir,
                step=at_step,
                trainable=trainable_parameters(raw_module),
                optimizer=optimizer.optimizer if hasattr(optimizer, "optimizer") else optimizer,
                scheduler=scheduler,
                extra={
                    "batches_done": batches_done,
                    "elapsed_s": elapsed_before + time.perf_counter() - start_time,
                    "stage": config.stage,
                    "samples_per_task": dict(task_counts),
                },
                keep_last=config.keep_last,
            )
        accelerator.wait_for_everyone()

    with _signals(stop):
        while step < config.optim.max_steps:
            step_loss = 0.0
            raw_module.last_terms = {}
            for _ in range(config.optim.grad_accum):
                batch = next(batches)
                batches_done += 1
                with accelerator.accumulate(module):
                    with accelerator.autocast():
                        loss, n = stage_loss(
                            config.stage, raw_module, _to_device(batch, accelerator.device)
                        )
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and config.optim.max_grad_norm:
                        accelerator.clip_grad_norm_(
                            list(params.values()), config.optim.max_grad_norm
                        )
                    optimizer.step()
                    if accelerator.sync_gradients:
                        scheduler.step()
                    optimizer.zero_grad()
                step_loss += loss.item() / config.optim.grad_accum
                for name, value in (getattr(raw_module, "last_terms", None) or {}).items():
                    term_sums[name] += value
                    term_counts[name] += 1
                samples_seen += n * world
                # every turn of a packed conversation is one sample of its record's task (on more
                # than one process: this process's share times the number of processes)
                for task in batch.get("tasks") or ():
                    task_counts[str(task)] += world
            step += 1
            losses.append((step, step_loss))
            rate = samples_seen / max(time.perf_counter() - start_time, 1e-9)
            progress.update(step_loss, rate)
            if step % config.log_every == 0 or step == config.optim.max_steps:
                terms = {k: term_sums[k] / term_counts[k] for k in sorted(term_sums)}
                log.write(step, step_loss, scheduler.get_last_lr()[0], rate, terms)
                term_sums.clear()
                term_counts.clear()
            if val_dataset is not None and (
                step % config.val_every == 0 or step == config.optim.max_steps
            ):
                if main:
                    _validate(config, raw_module, val_dataset, collate_fn, accelerator, step)
                    module.train()
                accelerator.wait_for_everyone()
            if (
                step % config.save_every == 0
                or stop.signal is not None
                or step == config.optim.max_steps
            ):
                save(step)
            if stop.signal is not None:
                break
    progress.close()
    log.close()

    result = RunResult(
        out_dir, None, step, losses, stop.signal is not None, {}, time.perf_counter() - start_time, samples_seen
    )
    if stop.signal is not None or not main:
        return result
    elapsed = elapsed_before + time.perf_counter() - start_time
    best = _restore_best(out_dir, raw_module, step) if val_dataset is not None else None
    model.eval()
    result.scores = _evaluate(config, model) if config.eval_tasks else {}
    result.final = _save_final(
        config, model, step, elapsed, n_trainable, result.scores,
        samples_per_task=dict(task_counts), best=best,
    )  # fmt: skip
    if raw_module.dense is not None:
        from geoassist.model.dense_heads import save_dense_heads

        # pretraining-only heads travel beside the checkpoint, outside its inference path
        save_dense_heads(raw_module.dense, result.final)
    elif raw_module.model.region_decoder is None:
        _carry_dense_heads(Path(str(config.model)).expanduser(), result.final)
    return result


def _carry_dense_heads(source: Path, final: Path) -> None:
    """Stage 0's dense heads travel on through a stage that does not train them (stage 1), so
    the region decoder added in stage 2 can still start from them."""
    import shutil

    from geoassist.model.dense_heads import DENSE_HEADS_FILE, has_dense_heads

    if source.is_dir() and has_dense_heads(source) and not has_dense_heads(final):
        tmp = final / (DENSE_HEADS_FILE + ".tmp")
        shutil.copyfile(source / DENSE_HEADS_FILE, tmp)
        tmp.replace(final / DENSE_HEADS_FILE)


class _ShardedSampler(torch.utils.data.Sampler[list[int]]):
    """Each process takes its slice of every global batch (identical order on all processes)."""

    def __init__(self, sampler: ResumableBatchSampler, rank: int, world: int):
        self.sampler, self.rank, self.world = sampler, rank, world

    def __iter__(self):
        for batch in self.sampler:
            part = batch[self.rank :: self.world]
            if part:
                yield part

    def __len__(self) -> int:
        return len(self.sampler)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step_of(line: str) -> float:
    """The step of one ``loss_terms.jsonl`` line; a torn or empty line (a crash mid-write) is dropped."""
    try:
        return float(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return math.inf


class _Log:
    """CSV and TensorBoard logs of loss, learning rate and samples/s (main process only)."""

    def __init__(self, out_dir: Path, enabled: bool, resume_step: int):
        self.enabled = enabled
        if not enabled:
            return
        path = out_dir / "log.csv"
        self.terms_path = out_dir / "loss_terms.jsonl"
        if self.terms_path.is_file():  # as log.csv: keep the history up to the resume point
            kept = [line for line in self.terms_path.read_text().splitlines() if _step_of(line) <= resume_step]
            self.terms_path.write_text("".join(line + "\n" for line in kept))
        rows = []
        if (
            path.is_file()
        ):  # keep the history up to the resume point, drop what a crash left after it
            with path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        self.file = path.open("w", newline="")
        self.csv = csv.DictWriter(
            self.file, fieldnames=["step", "loss", "lr", "samples_per_s", "time"]
        )
        self.csv.writeheader()
        self.csv.writerows(rows)
        from geoassist.extras import require

        SummaryWriter = require("torch.utils.tensorboard", "train", "training logs").SummaryWriter
        self.tb = SummaryWriter(
            str(out_dir / "tensorboard"), purge_step=resume_step + 1 if resume_step else None
        )

    def write(self, step: int, loss: float, lr: float, rate: float, terms: dict[str, float] | None = None) -> None:
        """One log line; ``terms``: each loss term's mean since the last line (stage 0's dense heads),
        which also goes to ``loss_terms.jsonl`` and TensorBoard's ``loss/<term>``."""
        if not self.enabled:
            return
        self.csv.writerow(
            {
                "step": step,
                "loss": f"{loss:.6f}",
                "lr": f"{lr:.3e}",
                "samples_per_s": f"{rate:.3f}",
                "time": f"{time.time():.0f}",
            }
        )
        self.file.flush()
        self.tb.add_scalar("train/loss", loss, step)
        self.tb.add_scalar("train/lr", lr, step)
        self.tb.add_scalar("train/samples_per_s", rate, step)
        if terms:
            for name, value in terms.items():
                self.tb.add_scalar(f"loss/{name}", value, step)
            with self.terms_path.open("a") as f:
                f.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in terms.items()}}) + "\n")
        shown = "".join(f" {k} {v:.3f}" for k, v in (terms or {}).items())
        logger.info("step %d loss %.4f lr %.2e %.2f samples/s%s", step, loss, lr, rate, f" ({shown.strip()})" if shown else "")

    def close(self) -> None:
        if self.enabled:
            self.file.close()
            self.tb.close()


class _progress:
    def __init__(self, enabled: bool, total: int, start: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=total,
            initial=start,
            disable=not enabled,
            desc="train",
            unit="step",
            dynamic_ncols=True,
        )

    def update(self, loss: float, rate: float) -> None:
        self.bar.set_postfix(loss=f"{loss:.4f}", samples_s=f"{rate:.2f}")
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def _evaluate(config: TrainConfig, model) -> dict[str, Any]:
    """Scores on the run's held-out split through the evaluation harness."""
    if not config.data.eval:
        logger.warning("eval_tasks set but data.eval is empty: skipping evaluation")
        return {}
    from geoassist.assistant import Assistant
    from geoassist.data_recipes import load_records
    from geoassist.eval import evaluate

    assistant = Assistant(model, device=model.device)
    records, image_root = load_records(config.data.eval, split=config.data.eval_split)
    scores = {}
    for task in config.eval_tasks:
        report = evaluate(
            task,
            records,
            assistant,
            image_root,
            out=Path(config.out_dir) / "eval" / task,
            limit=config.eval_limit,
        )
        scores[task] = {k: v for k, v in report["metrics"].items() if isinstance(v, (int, float))}
    return scores


def _read_best(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "best" / "best.json"
    return json.loads(path.read_text()) if path.is_file() else None


@torch.no_grad()
def _validation_loss(stage: int, module, dataset, collate_fn, accelerator, batch_size: int) -> float:
    """Mean loss over the validation samples (turn order of epoch 0), weighted by sample."""
    total, count = 0.0, 0
    for start in range(0, len(dataset), batch_size):
        batch = collate_fn([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        with accelerator.autocast():
            loss, n = stage_loss(stage, module, _to_device(batch, accelerator.device))
        total += float(loss) * n
        count += n
    return total / max(count, 1)


def _validate(config: TrainConfig, raw_module, dataset, collate_fn, accelerator, step: int) -> None:
    """Score the validation loss; keep the trainable weights when it is the best so far."""
    from safetensors.torch import save_file

    raw_module.eval()
    loss = _validation_loss(config.stage, raw_module, dataset, collate_fn, accelerator, config.optim.batch_size)
    out_dir = Path(config.out_dir)
    best = _read_best(out_dir)
    history = (best or {}).get("history", []) + [{"step": step, "val_loss": round(loss, 6)}]
    better = best is None or loss < best["val_loss"]
    logger.info("step %d validation loss %.4f%s", step, loss, " (best so far)" if better else "")
    folder = out_dir / "best"
    folder.mkdir(parents=True, exist_ok=True)
    if better:
        tmp = folder / "trainable.safetensors.tmp"
        tensors = {k: v.detach().cpu().contiguous() for k, v in trainable_parameters(raw_module).items()}
        save_file(tensors, str(tmp))
        os.replace(tmp, folder / "trainable.safetensors")
        best = {"step": step, "val_loss": round(loss, 6), "n": len(dataset)}
    record = {**best, "history": history}
    tmp = folder / "best.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, folder / "best.json")


def _restore_best(out_dir: Path, raw_module, step: int) -> dict[str, Any] | None:
    """Load the best validated trainable weights into the model (unless the last step was best)."""
    from safetensors.torch import load_file

    best = _read_best(out_dir)
    if best is None:
        return None
    if best["step"] != step:
        weights = load_file(str(out_dir / "best" / "trainable.safetensors"))
        missing = set(weights) - set(dict(raw_module.named_parameters()))
        if missing:
            from geoassist.errors import CheckpointError

            raise CheckpointError(
                f"{out_dir / 'best'} holds weights this run does not train ({sorted(missing)[:3]}…); "
                "it belongs to another run: delete that folder and resume"
            )
        raw_module.load_state_dict(weights, strict=False)
        logger.info(
            "final model: the weights of step %d (validation loss %.4f), not the last step %d",
            best["step"], best["val_loss"], step,
        )  # fmt: skip
    return best


def _save_final(
    config: TrainConfig,
    model,
    step: int,
    elapsed: float,
    n_trainable: int,
    scores: dict,
    *,
    samples_per_task: dict[str, int] | None = None,
    best: dict[str, Any] | None = None,
) -> Path:
    from geoassist.checkpoint import save_checkpoint
    from geoassist.train.card import training_card

    card = training_card(
        config,
        model,
        step=step,
        elapsed_s=elapsed,
        n_trainable=n_trainable,
        scores=scores,
        hardware=_hardware(),
        samples_per_task=samples_per_task,
        best=best,
    )
    return save_checkpoint(model, Path(config.out_dir) / "final", card=card)
