"""The training loop: the seed's recipe (SGD momentum 0.9, weight decay 1e-4, cosine annealing,
best-model checkpoint) with crash-safe, resumable checkpoints and per-epoch figures.

    python -m trainer_pt train --data-path data/digits --model mobilenet_v3_small --image-size 32
    torchrun --nproc-per-node 2 -m trainer_pt train --data-path data/digits --epochs 1   # DDP, gloo on CPU
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import resource
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from imgbench import trainer_cli
from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord
from imgbench.training_log import append_epoch, read_epochs, truncate_after
from trainer_pt import checkpoint as ckpt
from trainer_pt.data import EpochSampler, ShardSampler, Splits, load_splits, make_loader
from trainer_pt.distributed import DistInfo, all_reduce_sum, any_rank, cleanup, init_distributed
from trainer_pt.models import build_model

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
LOG_NAME = "train.log"
REFERENCE_BATCH = 256  # --lr is the learning rate at this global batch size (linear scaling rule)


class Interrupted(Exception):
    """SIGTERM/SIGINT arrived; the state was saved and the process should exit with ``exit_code``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.exit_code = 128 + signum


class StopFlag:
    """Turns SIGTERM/SIGINT into a flag the loop checks between steps (a step is never cut in half)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def install(self) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            log.warning("received %s: stopping after the current step", signal.Signals(signum).name)
        self.signum = signum


@dataclass
class EpochProgress:
    """What a partial epoch has accumulated, so a resumed epoch reports figures for the whole epoch."""

    step: int = 0
    loss_sum: float = 0.0
    samples: int = 0
    train_seconds: float = 0.0


@dataclass
class TrainState:
    epoch: int = 0  # last completed epoch
    best_top1: float = -1.0
    best_epoch: int = 0
    in_progress: EpochProgress | None = None
    history: list[EpochRecord] = field(default_factory=list)


def effective_lr(args: argparse.Namespace, world_size: int) -> float:
    return args.lr * args.batch_size * world_size / REFERENCE_BATCH


def build_optimizer(model: nn.Module, args: argparse.Namespace, lr: float) -> torch.optim.Optimizer:
    # No weight decay on norm layers and biases (torchvision's --norm-weight-decay 0 recipe).
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if not getattr(args, "fused_sgd", False):
        return torch.optim.SGD(groups, lr=lr, momentum=args.momentum)
    # One fused kernel for the whole update (the seed's "fused SGD"); refused, never silently replaced,
    # where torch has none for these parameters' device or dtype. torch itself runs this check only at
    # the first step; running it here fails before the first epoch.
    from torch.optim.optimizer import _device_dtype_check_for_fused

    try:
        for param in model.parameters():
            _device_dtype_check_for_fused(param)
        return torch.optim.SGD(groups, lr=lr, momentum=args.momentum, fused=True)
    except RuntimeError as exc:
        devices = sorted({str(p.device) for p in model.parameters()})
        raise ImgbenchError(
            f"--fused-sgd: torch {torch.__version__} has no fused SGD for parameters on {', '.join(devices)} "
            f"({str(exc).splitlines()[0]}); train without --fused-sgd"
        ) from None


def optimizer_fusion(args: argparse.Namespace) -> str:
    """The recipe's ``optimizer_fusion``: what the optimizer step actually ran as."""
    if getattr(args, "fused_sgd", False):
        return "fused: torch.optim.SGD(fused=True)"
    return "none: torch.optim.SGD, torch's default kernels (for-loop on CPU, foreach on CUDA)"


def build_scheduler(
    optimizer: torch.optim.Optimizer, args: argparse.Namespace, steps_per_epoch: int = 1
) -> torch.optim.lr_scheduler.LRScheduler:
    """Cosine annealing, optionally after a linear warm-up, in units of the scheduler's step: epochs
    (``--lr-schedule epoch``, torchvision's) or optimizer steps (``--lr-schedule step``; the loop then
    steps it every batch and ``steps_per_epoch`` converts epochs to steps)."""
    unit = steps_per_epoch if args.lr_schedule == "step" else 1
    total = args.epochs * unit
    warmup = min(args.lr_warmup_epochs * unit, max(total - 1, 0))
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max(total - warmup, 1), eta_min=args.lr_min
    )
    if warmup == 0:
        return cosine
    linear = torch.optim.lr_scheduler.LinearLR(
        optimizer, start_factor=args.lr_warmup_decay, total_iters=warmup
    )
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [linear, cosine], milestones=[warmup])


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    # ru_maxrss is in KiB on Linux: the process's peak resident set, what a container limit sees.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_rss"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast_context(device: torch.device, amp: str | None) -> Any:
    if amp is None:
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def train_one_epoch(
    model: nn.Module,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    loader: torch.utils.data.DataLoader,
    args: argparse.Namespace,
    dist_info: DistInfo,
    progress: EpochProgress,
    stop: StopFlag,
    epoch: int,
    max_steps: int | None = None,
    step_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> bool:
    """Train until the loader is exhausted (True) or a stop signal arrives (False).

    ``progress`` accumulates across an interruption, so a resumed epoch reports the whole epoch."""
    model.train()
    device = dist_info.device
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    bar = tqdm(
        loader,
        desc=f"epoch {epoch}/{args.epochs}",
        initial=progress.step,
        total=progress.step + len(loader),
        unit="batch",
        disable=not (dist_info.is_main and sys.stderr.isatty()) or getattr(args, "no_progress", False),
        leave=False,
    )
    started = time.perf_counter()
    for images, targets in bar:
        images = images.to(device, non_blocking=True, memory_format=memory_format)
        targets = targets.to(device, non_blocking=True)
        with autocast_context(device, args.amp):
            loss = criterion(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if step_scheduler is not None:
            step_scheduler.step()
        # .item() syncs once per step; the loss sum is what the epoch record reports anyway.
        progress.loss_sum += loss.item() * images.shape[0]
        progress.samples += images.shape[0]
        progress.step += 1
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if any_rank(stop.signum is not None, dist_info) or (
            max_steps is not None and progress.step >= max_steps
        ):
            progress.train_seconds += time.perf_counter() - started
            bar.close()
            return max_steps is not None and stop.signum is None
    progress.train_seconds += time.perf_counter() - started
    bar.close()
    return True


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    criterion: nn.Module,
    loader: torch.utils.data.DataLoader,
    args: argparse.Namespace,
    dist_info: DistInfo,
    num_classes: int,
) -> tuple[float, float, float]:
    """(loss, top-1, top-5) over the whole evaluation split, summed across ranks."""
    model.eval()
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    k = min(5, num_classes)
    loss_sum = correct1 = correct5 = count = 0.0
    for images, targets in loader:
        images = images.to(dist_info.device, memory_format=memory_format)
        targets = targets.to(dist_info.device)
        with autocast_context(dist_info.device, args.amp):
            logits = model(images)
        loss_sum += criterion(logits.float(), targets).item() * images.shape[0]
        topk = logits.topk(k, dim=1).indices
        correct1 += (topk[:, 0] == targets).sum().item()
        correct5 += (topk == targets[:, None]).any(dim=1).sum().item()
        count += images.shape[0]
    loss_sum, correct1, correct5, count = all_reduce_sum([loss_sum, correct1, correct5, count], dist_info)
    if count == 0:
        raise ImgbenchError("the evaluation split is empty")
    return loss_sum / count, correct1 / count, correct5 / count


def resolved_config(
    args: argparse.Namespace, dist_info: DistInfo, class_names: list[str], steps_per_epoch: int
) -> dict[str, Any]:
    config = {key: (str(value) if isinstance(value, Path) else value) for key, value in vars(args).items()}
    config.pop("func", None)
    precision = f"autocast {args.amp}" if args.amp else "float32"
    config["recipe"] = trainer_cli.recipe_record(
        args,
        {
            "world_size": dist_info.world_size,
            "global_batch_size": args.batch_size * dist_info.world_size,
            "steps_per_epoch": steps_per_epoch,
            "peak_lr": effective_lr(args, dist_info.world_size),
            "precision": precision + (", channels_last" if args.channels_last else ""),
            "compile": f"torch.compile({args.compile})" if args.compile else None,
            "optimizer_fusion": optimizer_fusion(args),
            "threads": torch.get_num_threads(),
            "device": _device_name(dist_info.device, dist_info.world_size),
        },
    )
    config.update(
        world_size=dist_info.world_size,
        global_batch_size=args.batch_size * dist_info.world_size,
        effective_lr=effective_lr(args, dist_info.world_size),
        optimizer="SGD",
        scheduler="cosine" + (f"+linear-warmup({args.lr_warmup_epochs})" if args.lr_warmup_epochs else ""),
        device=str(dist_info.device),
        num_classes=len(class_names),
        torch=torch.__version__,
        torchvision=torchvision.__version__,
    )
    return config


def _device_name(device: torch.device, world_size: int) -> str:
    # trainer-tf's words for the same thing (imgbench.trainer_cli.describe_cpu), so the recipe rows match.
    if device.type == "cuda":
        return f"gpu: {torch.cuda.get_device_name(device)} ×{world_size}"
    return trainer_cli.describe_cpu()


def apply_dropout(model: nn.Module, rate: float | None) -> None:
    """``--dropout``: every dropout layer at ``rate`` (None keeps the architecture's own)."""
    if rate is None:
        return
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = rate


def _check_resume_fits(
    state: dict[str, Any], args: argparse.Namespace, class_names: list[str], source: Path
) -> None:
    saved_classes = state.get("class_names", [])
    if len(saved_classes) != len(class_names):
        raise ckpt.CheckpointError(
            f"--resume: checkpoint {source} was trained on {len(saved_classes)} classes, "
            f"but {args.data_path} has {len(class_names)}; use the same dataset or a new --output-dir"
        )
    if saved_classes != class_names:
        raise ckpt.CheckpointError(
            f"--resume: checkpoint {source} has classes {saved_classes}, {args.data_path} has {class_names}"
        )
    for key in ("model", "image_size"):
        saved = state["args"].get(key)
        if saved != getattr(args, key):
            raise ckpt.CheckpointError(
                f"--resume: checkpoint {source} was trained with --{key.replace('_', '-')} {saved}, "
                f"this run asks for {getattr(args, key)}"
            )


def _checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    state: TrainState,
    config: dict[str, Any],
    class_names: list[str],
) -> dict[str, Any]:
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "epoch": state.epoch,
        "in_progress": vars(state.in_progress) if state.in_progress else None,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "args": config,
        "class_names": class_names,
        "architecture": config["model"],
        "rng": ckpt.rng_state(),
    }


def main(args: argparse.Namespace) -> Path:
    """Train; returns the run folder. Raises ImgbenchError for bad input before anything is written."""
    if args.output_dir is None and "RANK" in os.environ:
        raise ImgbenchError("under torchrun pass --output-dir: every rank must write the same run folder")
    run_dir = Path(args.output_dir or default_output_dir(args.model))
    args.output_dir = run_dir
    stop = StopFlag()
    stop.install()
    dist_info = init_distributed(args.device, args.threads)
    try:
        return _train(args, run_dir, dist_info, stop)
    finally:
        cleanup(dist_info)
        # One run's log file only: --repeats trains the next seed in this process.
        for handler in [h for h in logging.getLogger().handlers if getattr(h, "imgbench_run_log", False)]:
            logging.getLogger().removeHandler(handler)
            handler.close()


def load_run_splits(args: argparse.Namespace) -> Splits:
    """The run's train/val splits with every augmentation flag applied (``--hflip`` was once dropped
    here, so digits were flipped at p 0.5 whatever the command said)."""
    return load_splits(
        Path(args.data_path),
        args.image_size,
        check=not args.skip_data_check,
        crop_scale_min=args.crop_scale_min,
        hflip=args.hflip,
        augment=not getattr(args, "no_augment", False),
        val_resize_size=getattr(args, "val_resize_size", None),
    )


def default_output_dir(architecture: str) -> Path:
    return Path("runs") / f"pt_{architecture}" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def _train(args: argparse.Namespace, run_dir: Path, dist_info: DistInfo, stop: StopFlag) -> Path:
    if args.epochs < 1:
        raise ImgbenchError(f"--epochs must be at least 1, got {args.epochs}")
    if not 0.0 < args.crop_scale_min <= 1.0:
        raise ImgbenchError(f"--crop-scale-min must be in (0, 1], got {args.crop_scale_min}")
    if not 0.0 <= args.hflip <= 1.0:
        raise ImgbenchError(f"--hflip must be in [0, 1], got {args.hflip}")
    splits = load_run_splits(args)
    class_names = splits.class_names
    # Seeded before the model is built: the random initialization is part of the recipe.
    seed_everything(args.seed + dist_info.rank)
    model = build_model(
        args.model, len(class_names), args.image_size, args.bn_momentum
    )  # unknown names fail here
    apply_dropout(model, args.dropout)

    resume_state: dict[str, Any] | None = None
    # Every rank decides alike: they read the same run folder before anyone writes a checkpoint.
    if trainer_cli.resolve_resume(args, run_dir, ckpt.newest_checkpoint(run_dir)):
        resume_state = ckpt.load_resume_state(run_dir)
        _check_resume_fits(resume_state, args, class_names, run_dir / ckpt.LAST)
    elif (run_dir / ckpt.LAST).exists():
        raise ImgbenchError(
            f"{run_dir} already holds a checkpoint ({ckpt.LAST}); pass --resume (or --resume auto) "
            "to continue it or choose another --output-dir"
        )

    if dist_info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _add_file_log(run_dir)
    sampler = EpochSampler(
        len(splits.train), args.seed, dist_info.rank, dist_info.world_size, shuffle=not args.no_shuffle
    )
    if len(sampler) < args.batch_size:
        raise ImgbenchError(
            f"{args.data_path}/train has {len(splits.train)} images: fewer than one batch of "
            f"{args.batch_size} per process; lower --batch-size"
        )
    steps_per_epoch = len(sampler) // args.batch_size
    config = resolved_config(args, dist_info, class_names, steps_per_epoch)
    log.info("config: %s", json.dumps(config, sort_keys=True))

    device = dist_info.device
    model.to(device)
    if args.channels_last:
        model.to(memory_format=torch.channels_last)
    lr = effective_lr(args, dist_info.world_size)
    optimizer = build_optimizer(model, args, lr)
    scheduler = build_scheduler(optimizer, args, steps_per_epoch)
    # The scaler matters only for fp16; bf16 has fp32's exponent range.
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    state = TrainState()
    if resume_state is not None:
        model.load_state_dict(resume_state["model"])
        optimizer.load_state_dict(resume_state["optimizer"])
        scheduler.load_state_dict(resume_state["lr_scheduler"])
        scaler.load_state_dict(resume_state["scaler"])
        ckpt.restore_rng_state(resume_state["rng"])
        state.epoch = resume_state["epoch"]
        state.best_top1 = resume_state["best_top1"]
        state.best_epoch = resume_state["best_epoch"]
        if resume_state.get("in_progress"):
            state.in_progress = EpochProgress(**resume_state["in_progress"])
        log.info(
            "resumed from %s: epoch %d complete%s",
            run_dir / ckpt.LAST,
            state.epoch,
            f", epoch {state.epoch + 1} at step {state.in_progress.step}" if state.in_progress else "",
        )
    if dist_info.is_main:
        # Figures written after the checkpoint's epoch belong to the epoch that was in progress: drop them.
        truncate_after(run_dir, state.epoch)
        atomic_write_text(run_dir / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    state.history = read_epochs(run_dir) if dist_info.is_main else []

    train_model: nn.Module = model
    if dist_info.enabled:
        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if args.compile:
        train_model = torch.compile(train_model, mode=None if args.compile == "default" else args.compile)

    pin = device.type == "cuda"
    # drop_last: a last batch of one image breaks batch norm in training mode.
    train_loader = make_loader(splits.train, args.batch_size, sampler, args.workers, pin, drop_last=True)
    val_sampler = ShardSampler(len(splits.val), dist_info.rank, dist_info.world_size)
    val_loader = make_loader(splits.val, args.batch_size, val_sampler, args.workers, pin, drop_last=False)

    save = dist_info.is_main
    for epoch in range(state.epoch + 1, args.epochs + 1):
        progress = state.in_progress or EpochProgress()
        state.in_progress = None
        sampler.set_epoch(epoch, skip=progress.step * args.batch_size)
        log.info("starting epoch %d/%d (lr %.4g)", epoch, args.epochs, optimizer.param_groups[0]["lr"])
        epoch_started = time.perf_counter()
        seconds_before_resume = progress.train_seconds  # the part of this epoch run before an interruption
        finished = train_one_epoch(
            train_model,
            criterion,
            optimizer,
            scaler,
            train_loader,
            args,
            dist_info,
            progress,
            stop,
            epoch,
            step_scheduler=scheduler if args.lr_schedule == "step" else None,
        )
        if not finished:
            state.in_progress = progress
            if save:
                ckpt.save_checkpoint(
                    run_dir / ckpt.LAST,
                    _checkpoint_state(model, optimizer, scheduler, scaler, state, config, class_names),
                    keep_previous=True,
                )
                log.warning(
                    "saved %s at epoch %d step %d; continue with --resume",
                    run_dir / ckpt.LAST,
                    epoch,
                    progress.step,
                )
            assert stop.signum is not None
            raise Interrupted(stop.signum)
        val_loss, top1, top5 = evaluate(train_model, criterion, val_loader, args, dist_info, len(class_names))
        memory, _ = peak_memory(device)
        record = EpochRecord(
            epoch=epoch,
            train_loss=progress.loss_sum / max(progress.samples, 1),
            val_loss=val_loss,
            top1=top1,
            top5=top5,
            seconds=seconds_before_resume + (time.perf_counter() - epoch_started),
            images_per_second=progress.samples * dist_info.world_size / max(progress.train_seconds, 1e-9),
            peak_memory_bytes=memory,
            lr=optimizer.param_groups[0]["lr"],
        )
        log.info(
            "epoch %d/%d: train loss %.4f, val loss %.4f, top-1 %.2f%%, top-5 %.2f%%, %.1f s, %.0f img/s",
            epoch,
            args.epochs,
            record.train_loss,
            val_loss,
            100 * top1,
            100 * top5,
            record.seconds,
            record.images_per_second,
        )
        if args.lr_schedule == "epoch":
            scheduler.step()
        state.epoch = epoch
        improved = top1 > state.best_top1
        if improved:
            state.best_top1, state.best_epoch = top1, epoch
        if save:
            # Figures first, checkpoint second: a crash between them repeats the epoch, never loses it.
            append_epoch(run_dir, record)
            state.history.append(record)
            checkpoint = _checkpoint_state(model, optimizer, scheduler, scaler, state, config, class_names)
            if improved:
                ckpt.save_checkpoint(run_dir / ckpt.BEST, checkpoint)
            ckpt.save_checkpoint(run_dir / ckpt.LAST, checkpoint, keep_previous=True)
    if dist_info.is_main:
        log.info("training done: best top-1 %.2f%% at epoch %d", 100 * state.best_top1, state.best_epoch)
    return run_dir


def _add_file_log(run_dir: Path) -> None:
    handler = logging.FileHandler(run_dir / LOG_NAME, encoding="utf-8")
    handler.imgbench_run_log = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
