"""Training throughput benchmark (not a test): how much of a bare ``train_step`` ``model.fit`` keeps.

For each variant (fp32 / mixed precision, each without and with XLA) it times
- ``model.fit`` on a ``tf.data`` pipeline of in-memory tensors (the trainer's loop, callbacks and all),
- a bare ``train_step``: one ``tf.function`` doing forward, loss, gradients and the optimizer update on a
  fixed in-memory batch,
with the same model, batch and optimizer, after untimed warm-up steps (compilation included there).
Results go to ``<out>/trainer-tf-<model>-<UTC time>.json`` with the hardware named.

    .venv/tf/bin/python -m trainer_tf bench --model resnet18 --image-size 32 --batch-size 32 --steps 20
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VARIANTS = {
    "fp32": ("float32", False),
    "fp32_xla": ("float32", True),
    "mixed": ("mixed", False),
    "mixed_xla": ("mixed", True),
}


def _compiled_model(args: argparse.Namespace, policy: str, jit: bool):
    import keras

    from trainer_tf.models import build_model
    from trainer_tf.optim import make_optimizer

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_model(args.model, args.num_classes, args.image_size)
    model.compile(
        optimizer=make_optimizer(0.01, 1000, 10, 0.9, 1e-4),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
        jit_compile=jit,
    )
    return model


def _bench_fit(args, policy: str, jit: bool, images, labels) -> float:
    import tensorflow as tf

    model = _compiled_model(args, policy, jit)
    dataset = tf.data.Dataset.from_tensors((images, labels)).repeat().prefetch(tf.data.AUTOTUNE)
    model.fit(dataset, epochs=1, steps_per_epoch=args.warmup_steps, shuffle=False, verbose=0)
    start = time.perf_counter()
    model.fit(dataset, epochs=1, steps_per_epoch=args.steps, shuffle=False, verbose=0)
    return args.steps * args.batch_size / (time.perf_counter() - start)


def _bench_bare(args, policy: str, jit: bool, images, labels) -> float:
    import tensorflow as tf

    model = _compiled_model(args, policy, jit)
    optimizer, loss_fn = model.optimizer, model.loss
    mixed = policy.startswith("mixed_float16")

    @tf.function(jit_compile=jit)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
            scaled = optimizer.scale_loss(loss) if mixed else loss
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    x, y = tf.constant(images), tf.constant(labels)
    for _ in range(args.warmup_steps):
        train_step(x, y).numpy()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = train_step(x, y)
    loss.numpy()  # wait for the last step
    return args.steps * args.batch_size / (time.perf_counter() - start)


def run_bench(args: argparse.Namespace) -> Path:
    from imgbench.catalog import get_entry
    from imgbench.errors import ImgbenchError

    get_entry(args.model)
    unknown = sorted(set(args.variants or []) - set(VARIANTS))
    if unknown:
        raise ImgbenchError(f"unknown --variants {unknown}; choose from {', '.join(VARIANTS)}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from trainer_tf.hardware import environment

    gpus = tf.config.list_physical_devices("GPU")
    mixed_policy = "mixed_float16" if gpus else "mixed_bfloat16"
    rng = np.random.default_rng(0)
    images = rng.standard_normal((args.batch_size, args.image_size, args.image_size, 3), dtype=np.float32)
    labels = np.eye(args.num_classes, dtype=np.float32)[rng.integers(0, args.num_classes, args.batch_size)]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) / f"trainer-tf-{args.model}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "trainer-tf training throughput: model.fit vs bare train_step",
        "model": args.model,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "num_classes": args.num_classes,
        "steps": args.steps,
        "warmup_steps": args.warmup_steps,
        "created_at": datetime.now(UTC).isoformat(),
        "environment": environment(),
        "results": [],
    }
    results = document["results"]
    for name in args.variants or list(VARIANTS):
        precision, jit = VARIANTS[name]
        policy = mixed_policy if precision == "mixed" else "float32"
        fit_ips = _bench_fit(args, policy, jit, images, labels)
        bare_ips = _bench_bare(args, policy, jit, images, labels)
        row = {
            "variant": name,
            "policy": policy,
            "jit_compile": jit,
            "fit_images_per_second": round(fit_ips, 2),
            "bare_images_per_second": round(bare_ips, 2),
            "fit_over_bare": round(fit_ips / bare_ips, 4),
            # The process's peak so far: a variant's own only when it is the first (or only) one run.
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
        log.info(
            "%-10s fit %.1f img/s  bare train_step %.1f img/s  ratio %.3f",
            name,
            fit_ips,
            bare_ips,
            fit_ips / bare_ips,
        )
        results.append(row)
        baseline = next((r for r in results if r["variant"] == "fp32"), None)
        for done in results:
            if baseline:
                done["fit_vs_fp32_fit"] = round(
                    done["fit_images_per_second"] / baseline["fit_images_per_second"], 4
                )
        # Written after every variant: XLA on a CPU can take many minutes, partial results still count.
        out.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %s\n%s", out, markdown_table(document))
    return out


def markdown_table(document: dict) -> str:
    """The results as the Markdown table docs/benchmarks.md shows."""
    lines = [
        "| variant | policy | XLA | model.fit img/s | bare train_step img/s | fit / bare | fit vs fp32 fit |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in document["results"]:
        lines.append(
            f"| {row['variant']} | {row['policy']} | {'on' if row['jit_compile'] else 'off'} "
            f"| {row['fit_images_per_second']:.1f} | {row['bare_images_per_second']:.1f} "
            f"| {row['fit_over_bare']:.2f} | {row.get('fit_vs_fp32_fit', float('nan')):.2f} |"
        )
    return "\n".join(lines)
