"""``--compile``: the torch.compile'd model against eager PyTorch on the evaluation split, judged by the
export gate (``imgbench.compiled_check``).

    python -m trainer_pt train ... --compile max-autotune      # checked after training, before export
    python -m trainer_pt export --run-dir RUN --compile max-autotune --compile-check-images 128

The compiled model sees only full batches (the last one padded with zeros, its padding rows dropped):
a second batch shape would compile everything a second time, which costs as much as the first on a CPU.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from imgbench.compiled_check import evenly_spaced, judge, record_and_enforce
from imgbench.errors import ImgbenchError
from imgbench.manifest import CompiledCheck

log = logging.getLogger(__name__)


def compiler_name(mode: str) -> str:
    return f"torch.compile(mode={mode})"


def compile_model(model: nn.Module, mode: str) -> nn.Module:
    """``torch.compile`` with a CLI mode name ('default' is torch's own default, mode=None)."""
    return torch.compile(model, mode=None if mode == "default" else mode)


def _padded(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    if images.shape[0] == batch_size:
        return images
    padding = images.new_zeros((batch_size - images.shape[0], *images.shape[1:]))
    return torch.cat([images, padding])


@torch.inference_mode()
def compare_compiled(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    mode: str,
    min_agreement: float,
    max_abs_diff: float | None,
    stage: str = "export",
) -> CompiledCheck:
    """Run an eval-mode copy of ``model`` eagerly and compiled (``mode``) on every batch, compare the
    logits with the export gate. Returns the record; raises nothing for a failed gate (``passed``)."""
    eager = copy.deepcopy(model).eval()
    compiled = compile_model(copy.deepcopy(model).eval(), mode)
    eager_logits, compiled_logits, labels = [], [], []
    batch_size: int | None = None
    compile_seconds: float | None = None
    for images, targets in batches:
        batch_size = batch_size or images.shape[0]
        rows = images.shape[0]
        eager_logits.append(eager(images).float().numpy())
        started = time.perf_counter()
        compiled_logits.append(compiled(_padded(images, batch_size))[:rows].float().numpy())
        if compile_seconds is None:
            compile_seconds = time.perf_counter() - started
            log.info(
                "%s: first batch (compilation included) took %.1f s", compiler_name(mode), compile_seconds
            )
        labels.append(targets.numpy())
    if batch_size is None:
        raise ImgbenchError("the compiled-model check got no evaluation images")
    check = judge(
        compiler_name(mode),
        stage,
        np.concatenate(eager_logits),
        np.concatenate(compiled_logits),
        np.concatenate(labels),
        min_agreement,
        max_abs_diff,
        compile_seconds,
    )
    log.info(
        "%s vs eager on %d eval images: top-1 agreement %.4f%%, max |Δlogit| %.3g, accuracy %.2f%% "
        "compiled / %.2f%% eager: %s",
        check.compiler,
        check.n,
        100 * check.top1_agreement,
        check.max_abs_logit_diff,
        100 * (check.compiled_accuracy or 0.0),
        100 * (check.eager_accuracy or 0.0),
        "passed" if check.passed else "FAILED",
    )
    return check


def check_run(
    run_dir: Path,
    model: nn.Module,
    val_dataset: torch.utils.data.Dataset,
    mode: str,
    min_agreement: float,
    max_abs_diff: float | None,
    stage: str,
    batch_size: int = 64,
    images: int | None = None,
) -> CompiledCheck:
    """The check on (at most ``images`` evenly spaced) images of the val split, written into
    ``run_dir``; raises ``CompiledGateError`` when it failed."""
    indices = evenly_spaced(len(val_dataset), images)
    loader = DataLoader(Subset(val_dataset, indices), batch_size=min(batch_size, len(indices)), shuffle=False)
    check = compare_compiled(model, loader, mode, min_agreement, max_abs_diff, stage)
    return record_and_enforce(run_dir, check)
