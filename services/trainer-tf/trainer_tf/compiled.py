"""``--jit-compile``: the XLA-compiled model against Keras without XLA on the evaluation split, judged by
the export gate (``imgbench.compiled_check``).

    python -m trainer_tf train ... --jit-compile                 # checked after training, before export
    python -m trainer_tf export --run-dir RUN --jit-compile --compile-check-images 128

Both sides are the same ``model(x, training=False)`` in a ``tf.function``, one with ``jit_compile=True``.
The XLA side sees only full batches (the last one padded with zeros, its padding rows dropped): XLA
compiles once per input shape, and on this CPU each compilation takes tens of seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imgbench.compiled_check import evenly_spaced, judge, record_and_enforce
from imgbench.errors import ImgbenchError
from imgbench.manifest import CompiledCheck

log = logging.getLogger(__name__)

COMPILER = "XLA (tf.function jit_compile=True)"


def compile_xla(fn: Callable) -> Callable:
    """The XLA side (tests replace this seam with a deliberately wrong compiler)."""
    import tensorflow as tf

    return tf.function(fn, jit_compile=True)


def _padded(batch: np.ndarray, batch_size: int) -> np.ndarray:
    if batch.shape[0] == batch_size:
        return batch
    return np.concatenate([batch, np.zeros((batch_size - batch.shape[0], *batch.shape[1:]), batch.dtype)])


def compare_xla(
    model,
    images: np.ndarray,
    labels: np.ndarray | None,
    min_agreement: float,
    max_abs_diff: float | None,
    stage: str = "export",
    batch_size: int = 64,
) -> CompiledCheck:
    """Keras without XLA and with XLA on ``images`` (NHWC float32); the record, ``passed`` or not."""
    import tensorflow as tf

    if len(images) == 0:
        raise ImgbenchError("the XLA check got no evaluation images")

    def serve(batch):
        return model(batch, training=False)

    plain, xla = tf.function(serve, jit_compile=False), compile_xla(serve)
    batch_size = min(batch_size, len(images))
    plain_logits, xla_logits = [], []
    compile_seconds: float | None = None
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        plain_logits.append(np.asarray(plain(tf.constant(_padded(batch, batch_size))))[: len(batch)])
        started = time.perf_counter()
        xla_logits.append(np.asarray(xla(tf.constant(_padded(batch, batch_size))))[: len(batch)])
        if compile_seconds is None:
            compile_seconds = time.perf_counter() - started
            log.info("%s: first batch (compilation included) took %.1f s", COMPILER, compile_seconds)
    check = judge(
        COMPILER,
        stage,
        np.concatenate(plain_logits),
        np.concatenate(xla_logits),
        labels,
        min_agreement,
        max_abs_diff,
        compile_seconds,
    )
    log.info(
        "%s vs Keras without XLA on %d eval images: top-1 agreement %.4f%%, max |Δlogit| %.3g: %s",
        COMPILER,
        check.n,
        100 * check.top1_agreement,
        check.max_abs_logit_diff,
        "passed" if check.passed else "FAILED",
    )
    return check


def check_run(
    run_dir: Path,
    model,
    images: np.ndarray,
    labels: np.ndarray | None,
    min_agreement: float,
    max_abs_diff: float | None,
    stage: str,
    batch_size: int = 64,
    limit: int | None = None,
) -> CompiledCheck:
    """The check on (at most ``limit`` evenly spaced) eval images, written into ``run_dir``; raises
    ``CompiledGateError`` when it failed."""
    indices = evenly_spaced(len(images), limit)
    check = compare_xla(
        model,
        images[indices],
        None if labels is None else labels[indices],
        min_agreement,
        max_abs_diff,
        stage,
        batch_size,
    )
    return record_and_enforce(run_dir, check)
