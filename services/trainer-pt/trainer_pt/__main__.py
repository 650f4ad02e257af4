"""Command line of trainer-pt: ``python -m trainer_pt {train,export,bench} ...``.

    python -m trainer_pt train --data-path data/digits --image-size 32 --epochs 10 --output-dir runs/pt
    torchrun --nproc-per-node 2 -m trainer_pt train --data-path data/digits --epochs 1 --no-export
    python -m trainer_pt export --run-dir runs/pt --model-repository model-repository
    python -m trainer_pt bench --data-path data/digits --image-size 32
    python -m trainer_pt dynamic-bench --run-dir runs/pt --model-repository model-repository --sizes 32,48,64

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

from imgbench import trainer_cli
from imgbench.errors import ImgbenchError
from imgbench.paths import model_name

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
DEFAULT_OUTPUT_DIR = "runs/pt_<model>/<UTC time>"
log = logging.getLogger("trainer_pt")


def add_bench_data_arguments(parser: argparse.ArgumentParser) -> None:
    """``bench`` reads a dataset like ``train`` but has no recipe: the shared data flags only."""
    trainer_cli.add_data_arguments(parser)
    trainer_cli.add_model_arguments(parser)
    add_speed_arguments(parser)


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speed (PyTorch)")
    group.add_argument(
        "--amp", choices=("bf16", "fp16"), default=None, help="autocast dtype (default: off, fp32)"
    )
    group.add_argument("--channels-last", action="store_true", help="NHWC memory format (default: off)")
    add_compile_argument(group)
    group.add_argument(
        "--fused-sgd",
        action="store_true",
        help="torch.optim.SGD(fused=True), one fused kernel per update; an error where torch has none for "
        "the device (default: off, torch's default SGD kernels)",
    )


def add_compile_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--compile",
        nargs="?",
        const="default",
        default=None,
        choices=COMPILE_MODES,
        help="torch.compile the model, with an optional mode; the compiled model is then checked against "
        "eager on the val split under the export gate (default: off; bare flag: 'default')",
    )


def add_pt_export_arguments(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--serve-batch-size",
        type=int,
        default=8,
        help="TorchServe batchSize and Triton preferred batch (default: %(default)s)",
    )
    group.add_argument(
        "--serve-max-batch-delay",
        type=int,
        default=5,
        help="TorchServe maxBatchDelay in ms (default: %(default)s)",
    )
    group.add_argument(
        "--triton-max-batch-size", type=int, default=32, help="Triton max_batch_size (default: %(default)s)"
    )
    group.add_argument(
        "--skip-int8", action="store_true", help="do not build the INT8 ONNX model (default: build it)"
    )
    group.add_argument(
        "--tflite",
        action="store_true",
        help="also export TFLite fp32 and int8 through litert-torch, gated on the val split, with the "
        "interpreter's peak memory (edge/<model>/; adds ~30 s on 2 cores) (default: off)",
    )


def add_pt_dynamic_bench_arguments(parser: argparse.ArgumentParser) -> None:
    """``dynamic-bench``: the shared flags, then what torch.compile counts run with."""
    trainer_cli.add_dynamic_bench_arguments(parser)
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        choices=("inductor", "aot_eager", "eager", "none"),
        help="torch.compile backend for the compile counts; 'eager' counts Dynamo's graphs without "
        "generating code, 'none' skips them (default: %(default)s)",
    )


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_pt", description="trainer-pt: train, export and benchmark.", add_help=add_help
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (default: info)")
    commands = parser.add_subparsers(dest="command", required=True)

    # The flags both trainers share (imgbench.trainer_cli), then PyTorch's own speed and export flags.
    train = commands.add_parser("train", help="train, then export")
    export_group = trainer_cli.add_train_arguments(train, DEFAULT_OUTPUT_DIR)
    add_pt_export_arguments(export_group)
    add_speed_arguments(train)
    train.set_defaults(func=run_train)

    export = commands.add_parser("export", help="export a trained run into the model repository")
    export_group = trainer_cli.add_export_command_arguments(export)
    add_pt_export_arguments(export_group)
    add_compile_argument(export_group)  # export --compile MODE: the compiled-vs-eager check only
    export.add_argument(
        "-b", "--batch-size", type=int, default=64, help="validation batch size (default: %(default)s)"
    )
    export.add_argument(
        "-j", "--workers", type=int, default=0, help="data loading workers (default: %(default)s)"
    )
    export.set_defaults(func=run_export)

    bench = commands.add_parser(
        "bench", help="trainer images/s vs a bare loop; eager vs compile; fp32 vs bf16"
    )
    add_bench_data_arguments(bench)  # --amp and --compile are set per variant
    bench.add_argument("--steps", type=int, default=20, help="timed steps per variant (default: %(default)s)")
    bench.add_argument(
        "--warmup-steps", type=int, default=5, help="untimed steps per variant (default: %(default)s)"
    )
    bench.add_argument(
        "--variants",
        default="fp32,bf16,compile",
        help="comma-separated subset of fp32, bf16, compile, fused_sgd (default: %(default)s)",
    )
    bench.add_argument(
        "--out",
        type=Path,
        default=Path("benchmarks/results"),
        help="JSON folder (default: %(default)s)",
    )
    bench.set_defaults(func=run_bench)

    dynamic = commands.add_parser(
        "dynamic-bench", help="dynamic-shape exports over a set of sizes: accuracy, latency, recompiles"
    )
    add_pt_dynamic_bench_arguments(dynamic)
    dynamic.set_defaults(func=run_dynamic_bench)
    return parser


def run_dynamic_bench(args: argparse.Namespace) -> None:
    from trainer_pt.dynamic import run_bench as dynamic_bench

    dynamic_bench(args)


def run_train(args: argparse.Namespace) -> None:
    trainer_cli.check_recipe(args)
    if trainer_cli.skip_existing(args, model_name("pytorch", args.model)):
        return
    from trainer_pt.train import default_output_dir
    from trainer_pt.train import main as train_main

    # --repeats N: one run per seed, one after another; the first seed's model is the exported one.
    runs = trainer_cli.repeat_runs(args, default_output_dir(args.model))
    run_dirs = {run.seed: train_main(run) for run in runs}
    if len(runs) > 1:
        from imgbench.training_log import write_repeats

        log.info("wrote %s", write_repeats(Path(runs[0].output_dir).parent, run_dirs))
    # Exports are single-process work: under torchrun only rank 0 does them, after the group is gone.
    if int(os.environ.get("RANK", "0")) != 0:
        return
    if args.no_export:
        if args.compile:  # otherwise the export runs the check, before it publishes anything
            from trainer_pt.export import check_compiled

            check_compiled(run_dirs[runs[0].seed], args, stage="train")
        return
    from trainer_pt.export import export_run

    first = runs[0]
    first.run_dir = run_dirs[first.seed]
    export_run(first)


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
