"""The one command-line contract of both trainers: the same flags, names, meanings and defaults.

    python -m trainer_pt train --data-path data/digits --model mobilenet_v3_small --output-dir runs/pt
    python -m trainer_tf train --data-path data/digits --model mobilenet_v3_small --output-dir runs/tf

Each trainer builds its ``train`` and ``export`` parsers from these functions and adds only its
framework's own speed and export flags (``--amp``/``--compile`` vs ``--mixed-precision``/``--jit-compile``,
TorchServe vs TFLite options). Every help text states its default once, through ``%(default)s``.
``--bn-momentum`` is in PyTorch's convention everywhere (weight of the new batch); trainer-tf converts
it to Keras's (``1 - value``) where it builds the model.

Both trainers record the resolved recipe under :data:`RECIPE_KEYS` (``recipe_record``), so the report's
recipe table lines up row by row. Old flag names stay as aliases (trainer-tf's ``--data``,
``--run-dir``/``--out``, ``--warmup-epochs``, ``--no-check-data``).

Standard library and the core only: both trainer venvs import it before their framework.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from imgbench.catalog import CATALOG, CPU_DEFAULT_ARCHITECTURE
from imgbench.errors import ImgbenchError
from imgbench.paths import ModelRepository

log = logging.getLogger(__name__)

# Mirrors of imgbench.validation's gate defaults (that module needs numpy; this one must not).
DEFAULT_MIN_AGREEMENT = 0.999
DEFAULT_MAX_ABS_DIFF = 1e-3
DEFAULT_QUANTIZED_MIN_AGREEMENT = 0.9
"""Quantized exports are gated on top-1 agreement only; a short run's int8 agreement is noisy."""
IF_EXISTS_CHOICES = ("skip", "overwrite")
# --resume: bare is "required"; "auto" resumes only when the run folder holds a checkpoint.
RESUME_MODES = ("required", "auto")
DEVICE_CHOICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("epoch", "step")

# The resolved recipe both trainers record (config.json "recipe", manifest training.recipe), same keys,
# same meaning. A value one framework cannot have is recorded as None, never left out.
RECIPE_KEYS: tuple[str, ...] = (
    "architecture",
    "image_size",
    "val_resize_size",
    "epochs",
    "batch_size",
    "world_size",
    "global_batch_size",
    "steps_per_epoch",
    "lr",
    "peak_lr",
    "lr_min",
    "lr_schedule",
    "lr_warmup_epochs",
    "lr_warmup_decay",
    "optimizer",
    "momentum",
    "weight_decay",
    "weight_decay_kind",
    "label_smoothing",
    "bn_momentum",
    "dropout",
    "crop_scale_min",
    "hflip",
    "augmentation",
    "shuffle",
    "seed",
    "precision",
    "compile",
    "optimizer_fusion",
    "threads",
    "device",
    "data_workers",
)
# Taken from the parsed flags as they are; the rest each trainer measures or resolves.
_FLAG_RECIPE_KEYS = (
    "image_size",
    "epochs",
    "batch_size",
    "lr",
    "lr_min",
    "lr_schedule",
    "lr_warmup_epochs",
    "lr_warmup_decay",
    "momentum",
    "weight_decay",
    "label_smoothing",
    "crop_scale_min",
    "hflip",
    "seed",
)
OPTIMIZER = "SGD, torch update (buf = m·buf + g; w -= lr·buf)"
WEIGHT_DECAY_KIND = "L2 added to the gradient before momentum (torch SGD), not on norms and biases"


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_cpu() -> str:
    """The recipe's ``device`` on a CPU, the same words in both trainers: ``cpu: <model> (<n> cores)``;
    on GPUs both write ``gpu: <name> ×<count>``."""
    return f"cpu: {cpu_name()} ({usable_cores()} cores)"


def default_val_resize(image_size: int) -> int:
    """The seed's 256/224 ratio, rounded down (36 for 32, 73 for 64, 256 for 224)."""
    return image_size * 256 // 224


def bn_momentum_value(text: str) -> float | None:
    """``--bn-momentum``: a number in (0, 1) (PyTorch convention) or ``native`` (None: keep the
    architecture's own in each framework)."""
    if text == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or 'native', got {text!r}") from None
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1) or 'native', got {text!r}")
    return value


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def image_sizes(text: str) -> list[int]:
    """``--dynamic-sizes``/``--sizes``: comma-separated pixel sizes (``imgbench.dynamic_shapes``)."""
    from imgbench.dynamic_shapes import parse_sizes

    try:
        return parse_sizes(text)
    except ImgbenchError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data-path",
        "--data",
        dest="data_path",
        type=Path,
        required=required,
        default=None,
        help="ImageFolder root with train/ and val/" + ("" if required else " (default: %(default)s)"),
    )
    group.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="side length the model sees; 224 for ImageNet-like data (default: %(default)s)",
    )
    group.add_argument(
        "--val-resize-size",
        type=int,
        default=None,
        help="val: resize the shorter side to this, then center crop (default: image size·256/224)",
    )
    group.add_argument(
        "-b",
        "--batch-size",
        type=int,
        default=32,
        help="images per process (device) and step (default: %(default)s)",
    )
    group.add_argument(
        "-j",
        "--workers",
        type=int,
        default=2,
        help="data loading workers: DataLoader processes / tf.data parallel calls; 0 loads in-process "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--crop-scale-min",
        type=float,
        default=0.08,
        help="smallest area share the random resized crop keeps, torchvision's 0.08 (default: %(default)s)",
    )
    group.add_argument(
        "--hflip",
        type=_probability,
        default=0.5,
        help="horizontal flip probability; 0 for data that is not mirror-symmetric (default: %(default)s)",
    )
    group.add_argument(
        "--no-augment",
        action="store_true",
        help="train on the val preprocessing (resize + center crop), no crop or flip (default: augment)",
    )
    group.add_argument(
        "--no-shuffle",
        action="store_true",
        help="train in file order every epoch, the same order in both frameworks (default: shuffle)",
    )
    group.add_argument(
        "--skip-data-check",
        "--no-check-data",
        dest="skip_data_check",
        action="store_true",
        help="do not decode every image once before training (default: check)",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=CPU_DEFAULT_ARCHITECTURE,
        metavar="NAME",
        help=f"catalog name: {', '.join(CATALOG)} (default: %(default)s)",
    )
    group.add_argument(
        "--bn-momentum",
        type=bn_momentum_value,
        default=0.1,
        help="batch-norm momentum in PyTorch's convention (weight of the new batch; Keras's is 1 - this); "
        "'native' keeps each framework's architecture default (default: %(default)s)",
    )
    group.add_argument(
        "--dropout",
        type=_probability,
        default=None,
        help="dropout rate of every dropout layer; 0 turns it off (default: the architecture's own)",
    )
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per process (torch threads / TF intra- and inter-op) (default: the framework's "
        "choice)",
    )
    group.add_argument(
        "--device", default="auto", choices=DEVICE_CHOICES, help="where to train (default: %(default)s)"
    )


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    # The seed's recipe: SGD + cosine, with the linear scaling rule for the learning rate.
    group = parser.add_argument_group("recipe")
    group.add_argument("--epochs", type=int, default=10, help="(default: %(default)s)")
    group.add_argument(
        "--lr",
        type=float,
        default=0.1,
        help="learning rate at a global batch of 256, scaled linearly (default: %(default)s)",
    )
    group.add_argument(
        "--lr-min", type=float, default=0.0, help="cosine annealing floor (default: %(default)s)"
    )
    group.add_argument(
        "--lr-schedule",
        choices=LR_SCHEDULES,
        default="epoch",
        help="cosine (and warm-up) stepped once per epoch, torchvision's, or every optimizer step "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--lr-warmup-epochs",
        "--warmup-epochs",
        dest="lr_warmup_epochs",
        type=int,
        default=0,
        help="linear warm-up epochs (default: %(default)s)",
    )
    group.add_argument(
        "--lr-warmup-decay",
        type=float,
        default=0.01,
        help="warm-up starts at lr × this (default: %(default)s)",
    )
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    group.add_argument(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=float,
        default=1e-4,
        help="L2 weight decay, torch SGD semantics, not on norms and biases (default: %(default)s)",
    )
    group.add_argument(
        "--label-smoothing",
        type=float,
        default=0.0,
        help="cross-entropy label smoothing (default: %(default)s)",
    )
    group.add_argument(
        "--seed",
        type=int,
        default=0,
        help="initialization, shuffle and augmentation seed (default: %(default)s)",
    )


def add_run_arguments(parser: argparse.ArgumentParser, default_output_dir: str) -> None:
    group = parser.add_argument_group("run")
    group.add_argument(
        "--output-dir",
        "--run-dir",
        "--out",
        dest="output_dir",
        type=Path,
        default=None,
        help=f"run folder: config, checkpoints, metrics (default: {default_output_dir})",
    )
    group.add_argument(
        "--resume",
        nargs="?",
        const="required",
        default=None,
        choices=RESUME_MODES,
        help="continue the run in --output-dir: bare (= 'required') fails when it holds no checkpoint; "
        "'auto' continues from its last good checkpoint when there is one and starts a new run there "
        "otherwise, so the same command serves a restarted pod (default: start a new run)",
    )
    group.add_argument("--no-export", action="store_true", help="stop after training (default: export)")
    group.add_argument("--no-progress", action="store_true", help="no progress bar (default: on a terminal)")
    group.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="train once per seed --seed, --seed+1, ...: each run in <output-dir>/seed-<seed>, the first "
        "seed's model exported, every seed's figures with mean and 95%% CI in <output-dir>/repeats.json "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--if-exists",
        choices=IF_EXISTS_CHOICES,
        default="overwrite",
        help="when manifests/<model>.json already exists in --model-repository: 'skip' logs one line and "
        "exits 0 without training, 'overwrite' trains and exports a new version (default: %(default)s)",
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The export flags both trainers share; returns the group so a trainer can add its own."""
    group = parser.add_argument_group("export")
    group.add_argument(
        "--model-repository",
        type=Path,
        default=Path("model-repository"),
        help="model repository root to export into (default: %(default)s)",
    )
    group.add_argument(
        "--version", type=int, default=None, help="model version (default: one past the newest)"
    )
    group.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="gate: least top-1 agreement of each float export with the framework on the val split "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--max-abs-diff",
        type=float,
        default=DEFAULT_MAX_ABS_DIFF,
        help="gate: largest |Δlogit| of each float export against the framework (default: %(default)s)",
    )
    group.add_argument(
        "--opset",
        type=int,
        default=18,
        choices=range(17, 19),
        metavar="{17,18}",
        help="ONNX opset; tf2onnx 1.17 stops at 18 (default: %(default)s)",
    )
    group.add_argument(
        "--compile-check-images",
        type=int,
        default=None,
        metavar="N",
        help="with --compile / --jit-compile: evenly spaced val images the compiled-vs-eager check runs on, "
        "under the same gate (default: every val image)",
    )
    group.add_argument(
        "--calibration-images",
        type=int,
        default=256,
        help="training images that calibrate the int8 exports (default: %(default)s)",
    )
    group.add_argument(
        "--quantized-min-agreement",
        type=_probability,
        default=DEFAULT_QUANTIZED_MIN_AGREEMENT,
        help="gate: least top-1 agreement of each quantized export with the framework on the val split "
        "(PyTorch: the INT8 ONNX model; TensorFlow: the dynamic-range and int8 TFLite models); "
        "0 records the figure without gating (default: %(default)s)",
    )
    group.add_argument(
        "--dynamic-sizes",
        type=image_sizes,
        default=None,
        metavar="SIZES",
        help="also export with a dynamic height/width (onnx_dynamic, plus savedmodel_dynamic or "
        "torchscript_dynamic), each gated at the training size and at every size listed, e.g. 32,48,64 "
        "(default: %(default)s, no dynamic export)",
    )
    return group


def add_dynamic_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``dynamic-bench`` of both trainers: a trained run, its repository with the dynamic exports, the
    sizes, and how to time them (``imgbench.dynamic_shapes``)."""
    parser.add_argument(
        "--run-dir",
        "--output-dir",
        dest="run_dir",
        type=Path,
        required=True,
        help="run folder written by 'train'",
    )
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=Path("model-repository"),
        help="holds the dynamic exports (default: %(default)s)",
    )
    parser.add_argument(
        "--data-path",
        "--data",
        dest="data_path",
        type=Path,
        default=None,
        help="dataset (default: the run's)",
    )
    parser.add_argument(
        "--sizes",
        type=image_sizes,
        required=True,
        help="image sizes to measure, e.g. 32,48,64 (the training size is always added)",
    )
    parser.add_argument(
        "--latency-runs",
        type=int,
        default=100,
        help="timed single-image runs per side and size (default: %(default)s)",
    )
    parser.add_argument(
        "--limit", type=int, default=0, help="evaluation images per size, 0 for all (default: %(default)s)"
    )
    parser.add_argument(
        "--threads", type=int, default=1, help="intra-op threads of every runtime (default: %(default)s)"
    )
    parser.add_argument(
        "--opset", type=int, default=18, help="ONNX opset of the fixed-shape exports (default: %(default)s)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default: the model repository's parent/dynamic)",
    )


def add_train_arguments(parser: argparse.ArgumentParser, default_output_dir: str) -> argparse._ArgumentGroup:
    """Every shared flag of ``train``; returns the export group for the trainer's own export flags."""
    add_data_arguments(parser)
    add_model_arguments(parser)
    add_recipe_arguments(parser)
    add_run_arguments(parser, default_output_dir)
    return add_export_arguments(parser)


def add_export_command_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``export``: a finished run folder, optionally another copy of its dataset, the export flags."""
    parser.add_argument(
        "--run-dir",
        "--output-dir",
        "--out",
        dest="run_dir",
        type=Path,
        required=True,
        help="run folder written by 'train'",
    )
    parser.add_argument(
        "--data-path",
        "--data",
        dest="data_path",
        type=Path,
        default=None,
        help="dataset for validation and calibration (default: the one the run trained on)",
    )
    return add_export_arguments(parser)


def check_recipe(args: argparse.Namespace) -> None:
    """Validate the shared flags before anything is read or written; errors name the value."""
    if args.epochs < 1:
        raise ImgbenchError(f"--epochs must be at least 1, got {args.epochs}")
    if args.batch_size < 1:
        raise ImgbenchError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise ImgbenchError(f"--workers must be ≥ 0, got {args.workers}")
    if not 0.0 < args.crop_scale_min <= 1.0:
        raise ImgbenchError(f"--crop-scale-min must be in (0, 1], got {args.crop_scale_min}")
    if not 0.0 <= args.label_smoothing < 1.0:
        raise ImgbenchError(f"--label-smoothing must be in [0, 1), got {args.label_smoothing}")
    if args.lr_warmup_epochs < 0:
        raise ImgbenchError(f"--lr-warmup-epochs must be ≥ 0, got {args.lr_warmup_epochs}")
    if args.threads is not None and args.threads < 1:
        raise ImgbenchError(f"--threads must be at least 1, got {args.threads}")
    if args.resume and args.output_dir is None:
        raise ImgbenchError("--resume needs --output-dir: the run folder to continue")


def resolve_resume(args: argparse.Namespace, run_dir: Path, checkpoint: Path | None) -> bool:
    """Whether this run continues from a checkpoint; ``checkpoint`` is the trainer's newest one in
    ``run_dir`` (None when it holds none). ``--resume auto`` logs which way it went.

    >>> resolve_resume(argparse.Namespace(resume="auto"), Path("runs/x"), None)
    False
    """
    if args.resume != "auto":
        return args.resume is not None
    if checkpoint is None:
        log.info("--resume auto: no checkpoint in %s; starting a new run", run_dir)
        return False
    log.info("--resume auto: resuming from %s", checkpoint)
    return True


def repeat_runs(args: argparse.Namespace, default_output_dir: Path) -> list[argparse.Namespace]:
    """``--repeats N``: N copies of ``args`` with seeds ``seed .. seed+N-1``, each with its own run folder
    ``<output-dir>/seed-<seed>``; ``[args]`` itself when N is 1."""
    if args.repeats < 1:
        raise ImgbenchError(f"--repeats must be at least 1, got {args.repeats}")
    if args.repeats == 1:
        return [args]
    if "RANK" in os.environ:
        raise ImgbenchError("--repeats runs the seeds one after another; start it without torchrun")
    base = Path(args.output_dir or default_output_dir)
    runs = []
    for offset in range(args.repeats):
        run = argparse.Namespace(**vars(args))
        run.seed, run.repeats = args.seed + offset, 1
        run.output_dir = base / f"seed-{run.seed}"
        runs.append(run)
    return runs


def skip_existing(args: argparse.Namespace, model: str) -> bool:
    """True (after one log line) when ``--if-exists skip`` and the model's manifest already exists."""
    if args.if_exists != "skip":
        return False
    manifest = ModelRepository(Path(args.model_repository)).manifest_path(model)
    if manifest.is_file():
        log.info("%s exists and --if-exists=skip: not training %s", manifest, model)
        return True
    return False


def recipe_record(args: argparse.Namespace, resolved: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe under :data:`RECIPE_KEYS`: the shared flags as parsed, plus what the trainer resolved
    or measured (``resolved``: threads and device actually used, global batch, peak lr, ...)."""
    record: dict[str, Any] = {key: getattr(args, key) for key in _FLAG_RECIPE_KEYS}
    record.update(
        architecture=args.model,
        val_resize_size=args.val_resize_size or default_val_resize(args.image_size),
        optimizer=OPTIMIZER,
        weight_decay_kind=WEIGHT_DECAY_KIND,
        bn_momentum="native" if args.bn_momentum is None else args.bn_momentum,
        dropout="native" if args.dropout is None else args.dropout,
        augmentation="none (val preprocessing)" if args.no_augment else "random resized crop + flip",
        shuffle="file order" if args.no_shuffle else "seeded per epoch",
        data_workers=args.workers,
    )
    record.update(resolved)
    unknown = sorted(set(record) - set(RECIPE_KEYS))
    missing = sorted(set(RECIPE_KEYS) - set(record))
    if unknown or missing:
        raise ImgbenchError(f"recipe record: unknown keys {unknown}, missing keys {missing}")
    return {key: record[key] for key in RECIPE_KEYS}
