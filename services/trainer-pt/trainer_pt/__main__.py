"""Command line of trainer-pt: ``python -m trainer_pt {train,export,bench} ...``.

    python -m trainer_pt train --data-path data/digits --image-size 32 --epochs 10 --output-dir runs/pt
    torchrun --nproc-per-node 2 -m trainer_pt train --data-path data/digits --epochs 1 --no-export
    python -m trainer_pt export --run-dir runs/pt --model-repository model-repository
    python -m trainer_pt bench --data-path data/digits --image-size 32

Expected failures (bad paths, unknown model names, a failed export gate) print one line and exit 1;
SIGTERM/SIGINT save a resumable checkpoint and exit 128+signal.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from imgbench.catalog import CATALOG, CPU_DEFAULT_ARCHITECTURE
from imgbench.errors import ImgbenchError
from imgbench.validation import DEFAULT_MAX_ABS_DIFF, DEFAULT_MIN_AGREEMENT

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
log = logging.getLogger("trainer_pt")


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-path", type=Path, required=True, help="ImageFolder root with train/ and val/")
    parser.add_argument(
        "--image-size",
        type=int,
        default=64,
        help="side length the model sees (default: 64; 224 for ImageNet-like data)",
    )
    parser.add_argument(
        "-b", "--batch-size", type=int, default=32, help="images per process and step (default: 32)"
    )
    parser.add_argument(
        "-j",
        "--workers",
        type=int,
        default=2,
        help="data loading worker processes (default: 2; 0 loads in-process)",
    )
    parser.add_argument(
        "--crop-scale-min",
        type=float,
        default=0.08,
        help="smallest area share RandomResizedCrop keeps (default: 0.08, torchvision's)",
    )
    parser.add_argument(
        "--hflip",
        type=float,
        default=0.5,
        help="horizontal flip probability; 0 for data that is not mirror-symmetric (default: 0.5)",
    )
    parser.add_argument(
        "--skip-data-check",
        action="store_true",
        help="do not decode every image before training (default: check)",
    )


def _bn_momentum(text: str) -> float | None:
    if text == "native":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'native', got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1] or 'native', got {text!r}")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=CPU_DEFAULT_ARCHITECTURE,
        help=f"catalog name, one of {', '.join(CATALOG)} (default: {CPU_DEFAULT_ARCHITECTURE})",
    )
    parser.add_argument(
        "--bn-momentum",
        type=_bn_momentum,
        default=0.1,
        help="batch-norm momentum, PyTorch convention; 'native' keeps the architecture's own "
        "(MobileNetV3: 0.01, too slow for short runs) (default: 0.1)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads per process (default: cores / processes)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: auto)")
    parser.add_argument(
        "--amp", choices=("bf16", "fp16"), default=None, help="autocast dtype (default: off, fp32)"
    )
    parser.add_argument("--channels-last", action="store_true", help="NHWC memory format (default: off)")
    parser.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        choices=COMPILE_MODES,
        help="torch.compile the model, with an optional mode (default: off; bare flag: 'default')",
    )


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("export")
    group.add_argument(
        "--model-repository", type=Path, default=Path("model-repository"), help="(default: model-repository)"
    )
    group.add_argument(
        "--version", type=int, default=None, help="model version (default: one past the newest)"
    )
    group.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        help=f"gate: top-1 agreement with PyTorch on the val split (default: {DEFAULT_MIN_AGREEMENT})",
    )
    group.add_argument(
        "--max-abs-diff",
        type=float,
        default=DEFAULT_MAX_ABS_DIFF,
        help=f"gate: max |Δlogit| against PyTorch (default: {DEFAULT_MAX_ABS_DIFF})",
    )
    group.add_argument("--opset", type=int, default=18, choices=(17, 18), help="ONNX opset (default: 18)")
    group.add_argument(
        "--serve-batch-size",
        type=int,
        default=8,
        help="TorchServe batchSize and Triton preferred batch (default: 8)",
    )
    group.add_argument(
        "--serve-max-batch-delay", type=int, default=5, help="TorchServe maxBatchDelay in ms (default: 5)"
    )
    group.add_argument(
        "--triton-max-batch-size", type=int, default=32, help="Triton max_batch_size (default: 32)"
    )
    group.add_argument(
        "--calibration-images",
        type=int,
        default=256,
        help="training images for INT8 calibration (default: 256)",
    )
    group.add_argument(
        "--skip-int8", action="store_true", help="do not build the INT8 ONNX model (default: build it)"
    )


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_pt", description="trainer-pt: train, export and benchmark.", add_help=add_help
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (default: info)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train, then export", formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add_data_arguments(train)
    add_model_arguments(train)
    # recipe: the seed's SGD + cosine, with the linear scaling rule for the learning rate
    train.add_argument("--epochs", type=int, default=10, help="(default: 10)")
    train.add_argument(
        "--lr",
        type=float,
        default=0.1,
        help="learning rate at a global batch of 256, scaled linearly (default: 0.1)",
    )
    train.add_argument("--lr-min", type=float, default=0.0, help="cosine annealing floor (default: 0)")
    train.add_argument("--momentum", type=float, default=0.9, help="(default: 0.9)")
    train.add_argument(
        "--wd", "--weight-decay", dest="weight_decay", type=float, default=1e-4, help="(default: 1e-4)"
    )
    train.add_argument("--label-smoothing", type=float, default=0.0, help="(default: 0)")
    train.add_argument("--lr-warmup-epochs", type=int, default=0, help="linear warm-up epochs (default: 0)")
    train.add_argument(
        "--lr-warmup-decay", type=float, default=0.01, help="warm-up starts at lr × this (default: 0.01)"
    )
    train.add_argument("--seed", type=int, default=0, help="(default: 0)")
    # checkpoints and outputs
    train.add_argument(
        "--output-dir",
        type=Path,
        default=Path("runs/trainer-pt"),
        help="run folder (default: runs/trainer-pt)",
    )
    train.add_argument(
        "--resume", action="store_true", help="continue from the run folder's last checkpoint (default: off)"
    )
    train.add_argument("--no-export", action="store_true", help="stop after training (default: export)")
    add_export_arguments(train)
    train.set_defaults(func=run_train)

    export = commands.add_parser("export", help="export a trained run into the model repository")
    export.add_argument("--run-dir", type=Path, required=True, help="run folder written by 'train'")
    export.add_argument(
        "-b", "--batch-size", type=int, default=64, help="validation batch size (default: 64)"
    )
    export.add_argument("-j", "--workers", type=int, default=0, help="data loading workers (default: 0)")
    export.add_argument(
        "--data-path", type=Path, default=None, help="dataset root (default: the one the run trained on)"
    )
    add_export_arguments(export)
    export.set_defaults(func=run_export)

    bench = commands.add_parser(
        "bench", help="trainer images/s vs a bare loop; eager vs compile; fp32 vs bf16"
    )
    add_data_arguments(bench)
    add_model_arguments(bench)  # --amp and --compile are set per variant
    bench.add_argument("--steps", type=int, default=20, help="timed steps per variant (default: 20)")
    bench.add_argument("--warmup-steps", type=int, default=5, help="untimed steps per variant (default: 5)")
    bench.add_argument(
        "--variants",
        default="fp32,bf16,compile",
        help="comma-separated subset of fp32, bf16, compile (default: fp32,bf16,compile)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="JSON folder (default: benchmarks/results)",
    )
    bench.set_defaults(func=run_bench)
    return parser


def run_train(args: argparse.Namespace) -> None:
    from trainer_pt.train import main as train_main

    run_dir = train_main(args)
    # Exports are single-process work: under torchrun only rank 0 does them, after the group is gone.
    if args.no_export or int(os.environ.get("RANK", "0")) != 0:
        return
    from trainer_pt.export import export_run

    args.run_dir = run_dir
    export_run(args)


def run_export(args: argparse.Namespace) -> None:
    from trainer_pt.export import export_run

    export_run(args)


def run_bench(args: argparse.Namespace) -> None:
    from trainer_pt.bench import main as bench_main

    bench_main(args)


def configure_logging(verbose: bool) -> None:
    # Only rank 0 talks at info level; the other DDP ranks would repeat every line.
    rank = int(os.environ.get("RANK", "0"))
    level = logging.DEBUG if verbose else logging.INFO if rank == 0 else logging.WARNING
    prefix = f"[rank {rank}] " if "RANK" in os.environ else ""
    logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    configure_logging(args.verbose)
    from trainer_pt.train import Interrupted

    try:
        args.func(args)
    except ImgbenchError as exc:
        # Expected failures are one line for the user; a traceback would hide the message.
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except Interrupted as exc:
        log.warning("interrupted by %s", exc)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
