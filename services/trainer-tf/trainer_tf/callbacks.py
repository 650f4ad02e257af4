"""Keras callbacks of a training run: per-epoch figures, best model, progress bar, clean stop on a signal.

Order matters (``callbacks_for_run``): figures and the best model are written before the backup, so a
crash between them re-runs that epoch and the repeat replaces its row, never the other way round.
"""

from __future__ import annotations

import logging
import resource
import signal
import sys
import time
from pathlib import Path

import keras
from tqdm import tqdm

from imgbench.errors import ImgbenchError
from imgbench.manifest import EpochRecord
from imgbench.training_log import append_epoch, truncate_after
from trainer_tf.checkpoint import BEST_STATE, BEST_WEIGHTS, read_json, save_weights_atomically, write_json

log = logging.getLogger(__name__)


def peak_memory() -> tuple[int, str]:
    """(bytes, kind): the GPU allocator's peak when a GPU is used, else the process's peak RSS."""
    import tensorflow as tf

    if tf.config.list_logical_devices("GPU"):
        return int(tf.config.experimental.get_memory_info("GPU:0")["peak"]), "gpu_peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_rss"  # Linux reports KiB


def current_lr(model: keras.Model) -> float:
    """The rate the next step uses (the schedule at the optimizer's step counter)."""
    optimizer = model.optimizer
    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer under mixed precision
    return float(keras.ops.convert_to_numpy(inner.learning_rate))


class EpochFigures(keras.callbacks.Callback):
    """Writes trainer-pt's per-epoch figures to metrics.jsonl/.csv and logs one line per epoch.

    Seconds cover the whole epoch (training and validation); images/s is training images over the
    training phase only, so validation does not dilute throughput.
    """

    def __init__(self, run_dir: Path, num_train: int, epochs: int) -> None:
        super().__init__()
        self.run_dir = Path(run_dir)
        self.num_train = num_train
        self.epochs = epochs
        self._first_epoch = True
        self._epoch_start = self._train_end = 0.0
        self._lr_at_start = 0.0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self._first_epoch:
            # A resumed run repeats the epoch that was in progress: drop any row written for it.
            truncate_after(self.run_dir, epoch)
            self._first_epoch = False
        self._lr_at_start = current_lr(self.model)
        self._train_end = 0.0
        self._epoch_start = time.perf_counter()

    def on_test_begin(self, logs=None) -> None:
        if not self._train_end:
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        now = time.perf_counter()
        train_seconds = (self._train_end or now) - self._epoch_start
        memory, _ = peak_memory()
        record = EpochRecord(
            epoch=epoch + 1,
            train_loss=float(logs["loss"]),
            val_loss=float(logs["val_loss"]),
            top1=float(logs["val_top1"]),
            top5=float(logs["val_top5"]),
            seconds=now - self._epoch_start,
            images_per_second=self.num_train / train_seconds if train_seconds > 0 else 0.0,
            peak_memory_bytes=memory,
            lr=self._lr_at_start,
        )
        append_epoch(self.run_dir, record)
        log.info(
            "epoch %d/%d  train_loss %.4f  val_loss %.4f  top1 %.2f%%  top5 %.2f%%  %.1f s  %.0f img/s  "
            "lr %.4g  peak %.0f MiB",
            record.epoch,
            self.epochs,
            record.train_loss,
            record.val_loss,
            100 * record.top1,
            100 * record.top5,
            record.seconds,
            record.images_per_second,
            record.lr,
            memory / 2**20,
        )


class BestModel(keras.callbacks.Callback):
    """Keeps the weights of the epoch with the best validation top-1 (ties: the earlier epoch)."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.weights_path = Path(run_dir) / BEST_WEIGHTS
        self.state_path = Path(run_dir) / BEST_STATE

    def best_top1(self) -> float:
        return float(read_json(self.state_path)["top1"]) if self.state_path.is_file() else -1.0

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        top1 = float((logs or {})["val_top1"])
        if top1 > self.best_top1():
            save_weights_atomically(self.model, self.weights_path)
            write_json(self.state_path, {"epoch": epoch + 1, "top1": top1, "top5": float(logs["val_top5"])})


class TrainingInterrupted(ImgbenchError):
    """SIGTERM/SIGINT stopped training; the last finished epoch is backed up."""


class StopOnSignal(keras.callbacks.Callback):
    """SIGTERM (a container stop, a scheduler's preemption) and SIGINT stop training between two
    batches; everything up to the last finished epoch is already on disk, so --resume continues."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir
        self.received: int | None = None
        self._epoch = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        self.received = signum

    def on_train_begin(self, logs=None) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def on_train_end(self, logs=None) -> None:
        self.restore()

    def restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch + 1

    def _check(self) -> None:
        if self.received is not None:
            self.restore()
            name = signal.Signals(self.received).name
            error = TrainingInterrupted(
                f"stopped by {name} during epoch {self._epoch}; epochs 1–{self._epoch - 1} are saved in "
                f"{self.run_dir}: continue with --resume --run-dir {self.run_dir}"
            )
            error.exit_code = 128 + self.received
            raise error

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self._check()

    def on_test_batch_end(self, batch: int, logs=None) -> None:
        self._check()


class Progress(keras.callbacks.Callback):
    """A tqdm bar per epoch on stderr (sparse updates when stderr is not a terminal, e.g. in a log)."""

    def __init__(self, steps_per_epoch: int, epochs: int) -> None:
        super().__init__()
        self.steps = steps_per_epoch
        self.epochs = epochs
        self.bar: tqdm | None = None

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.bar = tqdm(
            total=self.steps,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            file=sys.stderr,
            mininterval=0.5 if sys.stderr.isatty() else 30.0,
            leave=False,
        )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{float(logs['loss']):.4f}", refresh=False)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def callbacks_for_run(run_dir: Path, backup, num_train: int, epochs: int, steps: int, progress: bool):
    callbacks: list[keras.callbacks.Callback] = [StopOnSignal(run_dir)]
    if progress:
        callbacks.append(Progress(steps, epochs))
    callbacks += [EpochFigures(run_dir, num_train, epochs), BestModel(run_dir), backup]
    return callbacks
