"""trainer-tf: train a Keras image classifier on an ImageFolder tree and export it for every server.

    .venv/core/bin/imgbench data digits --out data/digits --size 32
    .venv/tf/bin/python -m trainer_tf train --data data/digits --model resnet18 --epochs 5 --image-size 32
    .venv/tf/bin/python -m trainer_tf train ... --resume --run-dir runs/tf_resnet18/<stamp>
    .venv/tf/bin/python -m trainer_tf export --run-dir runs/tf_resnet18/<stamp> --model-repository DIR
    .venv/tf/bin/python -m trainer_tf bench --model resnet18 --image-size 32 --batch-size 32

``train`` exports at the end (``--no-export`` to skip). Expected failures print one line and exit 1;
SIGTERM/SIGINT during training exit 143/130 with every finished epoch saved.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from imgbench.catalog import CATALOG, CPU_DEFAULT_ARCHITECTURE
from imgbench.errors import ImgbenchError
from imgbench.validation import DEFAULT_MAX_ABS_DIFF, DEFAULT_MIN_AGREEMENT

log = logging.getLogger("trainer_tf")


def _add_export_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument(
        "--model-repository",
        type=Path,
        default=Path("model-repository"),
        help="model repository root to export into (default: %(default)s)",
    )
    group.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help="gate: least top-1 agreement of SavedModel/ONNX/TFLite fp32 with Keras (default: %(default)s)",
    )
    group.add_argument(
        "--max-abs-diff",
        type=float,
        default=DEFAULT_MAX_ABS_DIFF,
        help="gate: largest |Δlogit| of SavedModel/ONNX/TFLite fp32 vs Keras (default: %(default)s)",
    )
    group.add_argument(
        "--quantized-min-agreement",
        type=float,
        default=0.9,
        help="gate: least top-1 agreement of the dynamic-range and int8 TFLite models (default: %(default)s)",
    )
    group.add_argument(
        "--calibration-images",
        type=int,
        default=200,
        help="training images that calibrate the int8 TFLite model (default: %(default)s)",
    )
    group.add_argument(
        "--opset",
        type=int,
        default=18,
        choices=range(13, 19),
        metavar="{13..18}",
        help="ONNX opset; tf2onnx 1.17 stops at 18 (default: %(default)s)",
    )
    group.add_argument(
        "--version", type=int, default=None, help="model version (default: one past the newest)"
    )
    group.add_argument("--skip-tflite", action="store_true", help="skip the three TFLite exports")
    group.add_argument(
        "--tfserving-base-path",
        default=None,
        help="base path written into tfserving/models.config, as the server sees the repository's "
        "tfserving/ folder (default: its absolute path here; containers: e.g. /models/tfserving)",
    )


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_tf", description=__doc__.split("\n")[0], add_help=add_help
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train (or resume) a model, then export it")
    group = train.add_argument_group("data")
    group.add_argument(
        "--data",
        "--data-path",
        dest="data",
        type=Path,
        default=Path("data/digits"),
        help="ImageFolder root with train/ and val/ (default: %(default)s)",
    )
    group.add_argument(
        "--image-size", type=int, default=64, help="training/eval side length (default: %(default)s)"
    )
    group.add_argument(
        "--val-resize-size",
        type=int,
        default=None,
        help="val: resize the shorter side to this, then center crop (default: size·256/224)",
    )
    group.add_argument(
        "--crop-scale-min",
        type=float,
        default=0.08,
        help="smallest area share the random resized crop keeps (default: %(default)s)",
    )
    group.add_argument(
        "--hflip",
        type=float,
        default=0.5,
        help="horizontal flip probability; 0 for data that is not mirror-symmetric (default: %(default)s)",
    )
    group.add_argument(
        "--skip-data-check",
        "--no-check-data",
        dest="check_data",
        action="store_false",
        help="do not decode every image once before training (default: check)",
    )
    group.add_argument(
        "--cache-budget-bytes",
        type=int,
        default=2 * 1024**3,
        help="cache decoded images in memory when a split fits (default: %(default)s)",
    )

    group = train.add_argument_group("model and recipe")
    group.add_argument(
        "--model",
        default=CPU_DEFAULT_ARCHITECTURE,
        metavar="NAME",
        help=f"catalog name: {', '.join(CATALOG)} (default: %(default)s)",
    )
    group.add_argument("--epochs", type=int, default=10, help="(default: %(default)s)")
    group.add_argument(
        "-b", "--batch-size", type=int, default=32, help="images per device per step (default: %(default)s)"
    )
    group.add_argument(
        "--lr",
        type=float,
        default=0.1,
        help="learning rate for a global batch of 256, scaled linearly (default: %(default)s)",
    )
    group.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: %(default)s)")
    group.add_argument(
        "--wd",
        "--weight-decay",
        dest="weight_decay",
        type=float,
        default=1e-4,
        help="L2 weight decay, torch SGD semantics (default: %(default)s)",
    )
    group.add_argument("--lr-min", type=float, default=0.0, help="cosine floor (default: %(default)s)")
    group.add_argument(
        "--lr-schedule",
        choices=("epoch", "step"),
        default="epoch",
        help="cosine stepped per epoch (trainer-pt's) or per optimizer step (default: %(default)s)",
    )
    group.add_argument(
        "--warmup-epochs",
        "--lr-warmup-epochs",
        dest="warmup_epochs",
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
    group.add_argument("--label-smoothing", type=float, default=0.0, help="(default: %(default)s)")
    group.add_argument(
        "--bn-momentum",
        type=float,
        default=0.1,
        help="batch-norm momentum, PyTorch convention (Keras's = 1 - this) (default: %(default)s)",
    )
    group.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")

    group = train.add_argument_group("speed")
    group.add_argument(
        "--threads",
        type=int,
        default=None,
        help="TensorFlow intra- and inter-op threads (default: TensorFlow's choice, one per core)",
    )
    group.add_argument(
        "--jit-compile", action="store_true", help="XLA; ~5× slower on CPU here, so off (default: off)"
    )
    group.add_argument(
        "--mixed-precision",
        nargs="?",
        const="auto",
        default=None,
        choices=["auto", "float16", "bfloat16"],
        help="mixed precision; bare flag: float16 on GPU, bfloat16 on CPU (default: off)",
    )

    group = train.add_argument_group("run")
    group.add_argument(
        "--run-dir",
        "--out",
        "--output-dir",
        dest="run_dir",
        type=Path,
        default=None,
        help="run folder: config, checkpoints, metrics (default: runs/tf_<model>/<UTC time>)",
    )
    group.add_argument("--resume", action="store_true", help="continue the run in --run-dir")
    group.add_argument("--no-export", action="store_true", help="train only")
    group.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_export_flags(train)

    export = commands.add_parser("export", help="export a finished run's best model and validate it")
    export.add_argument(
        "--run-dir", "--out", dest="run_dir", type=Path, required=True, help="run folder to export"
    )
    export.add_argument(
        "--data",
        "--data-path",
        dest="data",
        type=Path,
        default=None,
        help="dataset for validation and calibration (default: the run's own)",
    )
    _add_export_flags(export)

    bench = commands.add_parser("bench", help="training throughput: model.fit vs a bare train_step")
    bench.add_argument(
        "--model", default="resnet18", metavar="NAME", help="catalog name (default: %(default)s)"
    )
    bench.add_argument("--image-size", type=int, default=32, help="(default: %(default)s)")
    bench.add_argument("-b", "--batch-size", type=int, default=32, help="(default: %(default)s)")
    bench.add_argument("--num-classes", type=int, default=10, help="(default: %(default)s)")
    bench.add_argument("--steps", type=int, default=20, help="timed steps per variant (default: %(default)s)")
    bench.add_argument(
        "--warmup-steps",
        type=int,
        default=3,
        help="untimed steps per variant, compilation included (default: %(default)s)",
    )
    bench.add_argument(
        "--variants",
        nargs="+",
        default=None,
        help="subset of fp32, fp32_xla, mixed, mixed_xla (default: all)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="folder for the JSON result (default: %(default)s)",
    )
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # TensorFlow's C++ INFO/WARNING lines drown the figures; errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(args: argparse.Namespace) -> int:
    _configure_logging(args.verbose)
    if args.command == "train":
        from trainer_tf.train import train

        run_dir = train(args)
        if not args.no_export:
            from trainer_tf.export import export_run

            export_run(run_dir, args)
    elif args.command == "export":
        from trainer_tf.export import export_run

        export_run(args.run_dir, args)
    elif args.command == "bench":
        from trainer_tf.bench import run_bench

        run_bench(args)
    return 0


def cli(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    try:
        return main(args)
    except ImgbenchError as exc:
        # Expected failures: one line, no traceback.
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(cli())
