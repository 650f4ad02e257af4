"""Benchmark (not a test): the trainer's images/s against a bare loop on in-memory tensors, for the
same model, batch and precision; eager vs torch.compile; fp32 vs bf16; default vs fused SGD. Results go
to a JSON file with the hardware named.

    python -m trainer_pt bench --data-path data/digits --image-size 32 --steps 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn

from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from trainer_pt.data import EpochSampler, load_splits, make_loader
from trainer_pt.distributed import DistInfo
from trainer_pt.export import _cpu_name
from trainer_pt.models import build_model
from trainer_pt.train import (
    EpochProgress,
    StopFlag,
    autocast_context,
    build_optimizer,
    effective_lr,
    train_one_epoch,
)

log = logging.getLogger(__name__)

VARIANTS = {
    "fp32": {"amp": None, "compile": None, "fused_sgd": False},
    "bf16": {"amp": "bf16", "compile": None, "fused_sgd": False},
    "compile": {"amp": None, "compile": "default", "fused_sgd": False},
    # The seed's case study: torch.optim.SGD(fused=True) instead of the default kernels, fp32 eager.
    "fused_sgd": {"amp": None, "compile": None, "fused_sgd": True},
}


def _variant_args(args: argparse.Namespace, name: str) -> argparse.Namespace:
    return argparse.Namespace(
        **{**vars(args), **VARIANTS[name], "epochs": 1, "channels_last": False, "lr": 0.1, "momentum": 0.9,
           "weight_decay": 1e-4, "label_smoothing": 0.0}
    )  # fmt: skip


def _fresh_model(
    args: argparse.Namespace, num_classes: int, device: torch.device
) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = build_model(args.model, num_classes, args.image_size, args.bn_momentum).to(device)
    runnable = torch.compile(model) if args.compile else model
    return model, runnable


def trainer_images_per_second(args: argparse.Namespace, splits: Any, info: DistInfo) -> float:
    """The real train_one_epoch on the real DataLoader; warm-up steps are run and not counted."""
    model, runnable = _fresh_model(args, len(splits.class_names), info.device)
    optimizer = build_optimizer(model, args, effective_lr(args, 1))
    scaler = torch.amp.GradScaler(info.device.type, enabled=args.amp == "fp16")
    sampler = EpochSampler(len(splits.train), seed=0)
    loader = make_loader(splits.train, args.batch_size, sampler, args.workers, False, drop_last=True)
    if len(loader) < args.warmup_steps + args.steps:
        raise ImgbenchError(
            f"{args.data_path}/train gives {len(loader)} batches of {args.batch_size}; "
            f"--warmup-steps + --steps needs {args.warmup_steps + args.steps}"
        )
    criterion, stop = nn.CrossEntropyLoss(), StopFlag()
    warmup = EpochProgress()
    train_one_epoch(
        runnable, criterion, optimizer, scaler, loader, args, info, warmup, stop, 1, args.warmup_steps
    )
    sampler.set_epoch(2)
    timed = EpochProgress()
    train_one_epoch(runnable, criterion, optimizer, scaler, loader, args, info, timed, stop, 2, args.steps)
    return timed.samples / timed.train_seconds


def bare_images_per_second(
    args: argparse.Namespace, num_classes: int, info: DistInfo, step_seconds: list[float] | None = None
) -> float:
    """The same step on one in-memory batch: no loader, no bookkeeping; the ceiling for the trainer.
    ``step_seconds`` collects each timed step's ``optimizer.step()`` alone (what --fused-sgd changes)."""
    model, runnable = _fresh_model(args, num_classes, info.device)
    optimizer = build_optimizer(model, args, effective_lr(args, 1))
    criterion = nn.CrossEntropyLoss()
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size, device=info.device)
    targets = torch.randint(0, num_classes, (args.batch_size,), device=info.device)
    runnable.train()

    def step() -> None:
        with autocast_context(info.device, args.amp):
            loss = criterion(runnable(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        started = time.perf_counter()
        optimizer.step()
        if info.device.type == "cuda":
            torch.cuda.synchronize()
        optimizer_seconds.append(time.perf_counter() - started)

    optimizer_seconds: list[float] = []
    for _ in range(args.warmup_steps):
        step()
    optimizer_seconds.clear()
    if info.device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if info.device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    if step_seconds is not None:
        step_seconds.extend(optimizer_seconds)
    return args.steps * args.batch_size / elapsed


def hardware() -> dict[str, str]:
    return {
        "cpu": _cpu_name(),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def _write_report(out: Path, settings: dict[str, Any], results: list[dict[str, Any]]) -> None:
    by_name = {r["variant"]: r for r in results}
    ratios = {}
    for name, key in (
        ("compile", "compile_vs_eager_bare"),
        ("bf16", "bf16_vs_fp32_bare"),
        ("fused_sgd", "fused_sgd_vs_fp32_bare"),
    ):
        if "fp32" in by_name and name in by_name:
            ratios[key] = round(
                by_name[name]["bare_images_per_second"] / by_name["fp32"]["bare_images_per_second"], 3
            )
    report = {
        "benchmark": "trainer-pt",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": hardware(),
        "settings": settings,
        "results": results,
        "ratios": ratios,
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")


def main(args: argparse.Namespace) -> Path:
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise ImgbenchError(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    info = DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    splits = load_splits(
        Path(args.data_path),
        args.image_size,
        check=False,
        crop_scale_min=args.crop_scale_min,
        hflip=args.hflip,
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) / f"trainer-pt-{args.model}-{args.image_size}px-{stamp}.json"
    settings = {
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
        "workers": args.workers, "steps": args.steps, "warmup_steps": args.warmup_steps,
        "data_path": str(args.data_path), "device": str(info.device), "variants": variants,
    }  # fmt: skip
    results: list[dict[str, Any]] = []
    for name in variants:
        variant_args = _variant_args(args, name)
        log.info("bench %s: trainer loop", name)
        trainer = trainer_images_per_second(variant_args, splits, info)
        log.info("bench %s: bare loop", name)
        step_seconds: list[float] = []
        bare = bare_images_per_second(variant_args, len(splits.class_names), info, step_seconds)
        results.append(
            {"variant": name, **VARIANTS[name], "trainer_images_per_second": round(trainer, 2),
             "bare_images_per_second": round(bare, 2), "trainer_vs_bare": round(trainer / bare, 3),
             "optimizer_step_ms": round(1000 * statistics.median(step_seconds), 4),
             # The process's peak so far: a variant's own only when it is the first (or only) one run.
             "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        )  # fmt: skip
        log.info(
            "bench %s: trainer %.1f img/s, bare %.1f img/s, ratio %.3f", name, trainer, bare, trainer / bare
        )
        # Written after every variant: a slow torch.compile killed by a time limit keeps the others.
        _write_report(out, settings, results)
    print("| variant | trainer img/s | bare img/s | trainer/bare |\n|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['trainer_images_per_second']:.1f} | {r['bare_images_per_second']:.1f} "
              f"| {r['trainer_vs_bare']:.3f} |")  # fmt: skip
    log.info("wrote %s", out)
    return out
