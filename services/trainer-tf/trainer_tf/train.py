"""Training: trainer-pt's recipe with ``model.fit``.

SGD momentum 0.9 with PyTorch-style L2 weight decay 1e-4 (not on norms and biases), lr = --lr · global
batch / 256, cosine annealing per epoch (or per step) over epochs × (train images // global batch) steps,
optional warm-up and label smoothing, batch-norm momentum 0.9 in Keras's convention (PyTorch's 0.1).

Every check that needs no TensorFlow (dataset, model name, resume compatibility) runs before TensorFlow
is imported, so bad input fails fast and touches nothing.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgbench import trainer_cli
from imgbench.catalog import get_entry
from imgbench.errors import ImgbenchError
from trainer_tf import data
from trainer_tf.checkpoint import BACKUP_DIR, CONFIG_NAME, STATE_NAME, read_config, resume_epoch, write_json

log = logging.getLogger(__name__)

FUSED_SGD_REFUSAL = (
    "--fused-sgd: Keras has no fused SGD (the seed's tf.keras.optimizers.SGD(use_xla=True) does not exist); "
    "--jit-compile XLA-compiles the whole train step, the optimizer update included"
)
# Resuming with any of these changed would continue a different network or task.
_MUST_MATCH_ON_RESUME = ("architecture", "image_size")
# These may change on resume (a longer run, another copy of the data); the rest is logged if it differs.
_RECIPE_KEYS = (
    "epochs",
    "batch_size",
    "lr",
    "lr_min",
    "lr_schedule",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "lr_warmup_epochs",
    "bn_momentum",
    "dropout",
    "seed",
)


@dataclass(frozen=True)
class RunPlan:
    run_dir: Path
    config: dict
    train: data.SplitFiles
    val: data.SplitFiles
    resuming: bool


def default_run_dir(architecture: str) -> Path:
    return Path("runs") / f"tf_{architecture}" / datetime.now(UTC).strftime("%Y%m%d-%H%M%S")


def plan_run(args: argparse.Namespace) -> RunPlan:
    """Validate everything about the request and resolve its configuration; writes nothing."""
    entry = get_entry(args.model)  # unknown model: one line listing the catalog
    if args.image_size < entry.min_image_size:
        raise ImgbenchError(
            f"{args.model} needs --image-size ≥ {entry.min_image_size}, got {args.image_size}"
        )
    trainer_cli.check_recipe(args)
    if getattr(args, "fused_sgd", False):
        raise ImgbenchError(FUSED_SGD_REFUSAL)
    run_dir = Path(args.output_dir) if args.output_dir else default_run_dir(args.model)
    if not args.skip_data_check:  # first: every problem listed, before listing stops at the first
        data.check_readable(Path(args.data_path))
    train_split, val_split = data.list_dataset(Path(args.data_path))
    config = {
        "architecture": args.model,
        "model": f"tf_{args.model}",
        "data": str(Path(args.data_path).resolve()),
        "image_size": args.image_size,
        "val_resize_size": args.val_resize_size or data.default_val_resize(args.image_size),
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_min": args.lr_min,
        "lr_schedule": args.lr_schedule,
        "lr_warmup_decay": args.lr_warmup_decay,
        "momentum": args.momentum,
        "weight_decay": args.weight_decay,
        "weight_decay_kind": "L2 added to the gradient before momentum (torch SGD), not on norms, biases",
        "crop_scale_min": args.crop_scale_min,
        "hflip": args.hflip,
        "label_smoothing": args.label_smoothing,
        "lr_warmup_epochs": args.lr_warmup_epochs,
        "seed": args.seed,
        "jit_compile": args.jit_compile,
        "mixed_precision": args.mixed_precision,
        "threads": args.threads,
        # PyTorch's convention on the command line and in the recipe; Keras's only where models are built.
        "bn_momentum": args.bn_momentum,
        "bn_momentum_keras": None if args.bn_momentum is None else 1.0 - args.bn_momentum,
        "dropout": args.dropout,
        "no_augment": args.no_augment,
        "no_shuffle": args.no_shuffle,
        "workers": args.workers,
        "device_request": args.device,
        "class_names": train_split.class_names,
        "num_train": len(train_split),
        "num_eval": len(val_split),
    }
    config_path = run_dir / CONFIG_NAME
    state_path = run_dir / BACKUP_DIR / STATE_NAME
    resuming = trainer_cli.resolve_resume(args, run_dir, state_path if state_path.is_file() else None)
    # --resume auto in a folder whose first attempt died before its first epoch ended: a new run there.
    starts_over = args.resume == "auto" and not resuming and config_path.is_file()
    if resuming or starts_over:
        saved = read_config(run_dir)
        for key in _MUST_MATCH_ON_RESUME:
            if saved[key] != config[key]:
                raise ImgbenchError(
                    f"--resume: the run in {run_dir} has {key}={saved[key]!r}, this command asks for "
                    f"{config[key]!r}; resume with the same value or start a new --output-dir"
                )
        if saved["class_names"] != config["class_names"]:
            raise ImgbenchError(
                f"--resume: {args.data_path} has {len(config['class_names'])} classes "
                f"{config['class_names']}, "
                f"the checkpoint in {run_dir} was trained on {len(saved['class_names'])} "
                f"{saved['class_names']}; resume on the same classes or start a new --output-dir"
            )
        for key in _RECIPE_KEYS:
            if saved.get(key) != config[key]:
                log.warning("--resume: %s changed from %r to %r", key, saved.get(key), config[key])
        if not (run_dir / BACKUP_DIR).is_dir():
            # Killed before the first epoch finished: nothing to restore, so the run starts over.
            log.warning("--resume: %s has no finished epoch yet; starting at epoch 1", run_dir)
    elif config_path.exists():
        raise ImgbenchError(
            f"{run_dir} already holds a run; continue it with --resume or choose another --output-dir"
        )
    return RunPlan(run_dir, config, train_split, val_split, resuming or starts_over)


def _select_device(request: str) -> None:
    """``--device``: ``cpu`` hides every GPU; ``cuda`` fails without one; ``auto`` uses what is there."""
    import tensorflow as tf

    if request == "cpu":
        tf.config.set_visible_devices([], "GPU")
    elif request == "cuda" and not tf.config.list_physical_devices("GPU"):
        raise ImgbenchError("--device cuda: TensorFlow sees no GPU here; use --device cpu or auto")


def _configure_precision(requested: str | None, on_gpu: bool) -> str:
    import keras

    if not requested:
        policy = "float32"
    elif requested == "auto":
        # float16 needs loss scaling and only pays off on GPUs; CPUs with AMX/AVX512-BF16 prefer bfloat16.
        policy = "mixed_float16" if on_gpu else "mixed_bfloat16"
    else:
        policy = f"mixed_{requested}"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def train(args: argparse.Namespace) -> Path:
    """Train (or resume) a run and return its folder. Export is separate (``trainer_tf.export``)."""
    plan = plan_run(args)
    config = plan.config
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from trainer_tf.callbacks import callbacks_for_run
    from trainer_tf.checkpoint import AtomicBackupAndRestore
    from trainer_tf.distribution import fitting_under, select_strategy
    from trainer_tf.hardware import describe_device, environment, usable_cores
    from trainer_tf.models import build_model, count_parameters
    from trainer_tf.optim import make_optimizer, scaled_learning_rate

    if args.threads:
        # Before the first op: with other processes on 2 cores, fewer threads avoid oversubscription.
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    _select_device(args.device)
    keras.utils.set_random_seed(config["seed"])
    # TF_CONFIG with several workers, several GPUs or one device; before the device query below.
    strategy = select_strategy()
    gpus = tf.config.list_logical_devices("GPU")
    replicas = strategy.num_replicas_in_sync
    global_batch = config["batch_size"] * replicas
    steps = data.steps_per_epoch(config["num_train"], global_batch)
    total_steps = steps * config["epochs"]
    warmup_steps = config["lr_warmup_epochs"] * steps
    peak_lr = scaled_learning_rate(config["lr"], global_batch)
    policy = _configure_precision(config["mixed_precision"], bool(gpus))
    config.update(
        replicas=replicas,
        global_batch=global_batch,
        steps_per_epoch=steps,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        peak_lr=peak_lr,
        precision_policy=policy,
        memory_kind="gpu_peak" if gpus else "cpu_rss",
        device=describe_device(),
        environment=environment(),
    )
    config["recipe"] = trainer_cli.recipe_record(
        args,
        {
            "world_size": replicas,
            "global_batch_size": global_batch,
            "steps_per_epoch": steps,
            "peak_lr": peak_lr,
            "precision": policy,
            "compile": "XLA (jit_compile)" if config["jit_compile"] else None,
            # Keras has no fused optimizer (the seed's SGD(use_xla=True) does not exist); under XLA the
            # update is compiled into the one jit_compile'd train step, which is as close as it gets.
            "optimizer_fusion": (
                "XLA: the SGD update compiled into the jit_compile train step (Keras has no fused SGD)"
                if config["jit_compile"]
                else "none: Keras per-variable SGD update ops in the train step's tf.function"
            ),
            # What TensorFlow runs with: 0 means "its choice", one thread per usable core.
            "threads": tf.config.threading.get_intra_op_parallelism_threads() or usable_cores(),
            "device": config["device"],
        },
    )
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    created = read_config(plan.run_dir)["created_at"] if plan.resuming else datetime.now(UTC).isoformat()
    write_json(plan.run_dir / CONFIG_NAME, {**config, "created_at": created})
    log.info(
        "training %s on %s: %d train / %d val images, %d classes, %d epochs × %d steps, global batch %d, "
        "peak lr %.4g, %s, %s, run dir %s",
        config["model"],
        config["device"],
        config["num_train"],
        config["num_eval"],
        len(config["class_names"]),
        config["epochs"],
        steps,
        global_batch,
        peak_lr,
        policy,
        "XLA" if config["jit_compile"] else "no XLA",
        plan.run_dir,
    )

    train_cache = data.decoded_bytes_estimate(plan.train) <= args.cache_budget_bytes
    val_cache = len(plan.val) * config["image_size"] ** 2 * 3 * 4 <= args.cache_budget_bytes
    train_ds = data.train_dataset(
        plan.train,
        config["image_size"],
        global_batch,
        config["seed"],
        train_cache,
        config["crop_scale_min"],
        config["hflip"],
        augment=not config["no_augment"],
        shuffle=not config["no_shuffle"],
        val_resize_size=config["val_resize_size"],
        workers=config["workers"],
    )
    val_ds = data.eval_dataset(
        plan.val, config["image_size"], global_batch, config["val_resize_size"], val_cache
    )

    num_classes = len(config["class_names"])
    with strategy.scope():
        model = build_model(
            config["architecture"],
            num_classes,
            config["image_size"],
            bn_momentum=config["bn_momentum_keras"],
            dropout=config["dropout"],
        )
        optimizer = make_optimizer(
            peak_lr,
            steps,
            config["epochs"],
            config["momentum"],
            config["weight_decay"],
            warmup_epochs=config["lr_warmup_epochs"],
            warmup_decay=config["lr_warmup_decay"],
            lr_min=config["lr_min"],
            schedule=config["lr_schedule"],
        )
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=config["label_smoothing"]
            ),
            metrics=[
                keras.metrics.CategoricalAccuracy(name="top1"),
                keras.metrics.TopKCategoricalAccuracy(k=min(5, num_classes), name="top5"),
            ],
            jit_compile=config["jit_compile"],
        )
    log.info("%s: %d parameters", config["model"], count_parameters(model))
    done = resume_epoch(plan.run_dir)
    if plan.resuming and done >= config["epochs"]:
        log.info("the run in %s already finished its %d epochs", plan.run_dir, config["epochs"])
        return plan.run_dir
    backup = AtomicBackupAndRestore(plan.run_dir / BACKUP_DIR)
    callbacks = callbacks_for_run(
        plan.run_dir, backup, config["num_train"], config["epochs"], steps, progress=not args.no_progress
    )
    with fitting_under(strategy, model, train_ds):
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config["epochs"],
            callbacks=callbacks,
            shuffle=False,  # the dataset reshuffles itself each epoch
            verbose=0,  # our progress bar and one log line per epoch replace Keras's
        )
    return plan.run_dir
