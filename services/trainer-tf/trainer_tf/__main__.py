"""trainer-tf: train a Keras image classifier on an ImageFolder tree and export it for every server.

    .venv/core/bin/imgbench data digits --out data/digits --size 32
    .venv/tf/bin/python -m trainer_tf train --data-path data/digits --model resnet18 --epochs 5 \
        --image-size 32 --output-dir runs/tf_resnet18
    .venv/tf/bin/python -m trainer_tf train ... --resume --output-dir runs/tf_resnet18
    .venv/tf/bin/python -m trainer_tf export --run-dir runs/tf_resnet18/<stamp> --model-repository DIR
    .venv/tf/bin/python -m trainer_tf bench --model resnet18 --image-size 32 --batch-size 32
    .venv/tf/bin/python -m trainer_tf dynamic-bench --run-dir runs/tf_resnet18/<stamp> --sizes 32,48,64

``train`` exports at the end (``--no-export`` to skip). Expected failures print one line and exit 1;
SIGTERM/SIGINT during training exit 143/130 with every finished epoch saved.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from imgbench import trainer_cli
from imgbench.errors import ImgbenchError
from imgbench.paths import model_name

log = logging.getLogger("trainer_tf")


def _add_tf_export_flags(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--skip-tflite", action="store_true", help="skip the three TFLite exports")
    group.add_argument(
        "--tfserving-base-path",
        default=None,
        help="base path written into tfserving/models.config, as the server sees the repository's "
        "tfserving/ folder (default: its absolute path here; containers: e.g. /models/tfserving)",
    )


def add_jit_compile_argument(group: argparse._ArgumentGroup) -> None:
    group.add_argument(
        "--jit-compile",
        action="store_true",
        help="XLA; ~5× slower on CPU here, so off. The XLA-compiled model is then checked against Keras "
        "without XLA on the val split under the export gate (default: off)",
    )


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer_tf", description=__doc__.split("\n")[0], add_help=add_help
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    # The flags both trainers share (imgbench.trainer_cli), then Keras's own speed and export flags.
    train = commands.add_parser("train", help="train (or resume) a model, then export it")
    export_group = trainer_cli.add_train_arguments(train, "runs/tf_<model>/<UTC time>")
    _add_tf_export_flags(export_group)
    group = train.add_argument_group("speed (TensorFlow)")
    add_jit_compile_argument(group)
    group.add_argument(
        "--fused-sgd",
        action="store_true",
        help="refused: Keras has no fused SGD (the seed's SGD(use_xla=True) does not exist); "
        "--jit-compile compiles the update into the XLA train step",
    )
    group.add_argument(
        "--mixed-precision",
        nargs="?",
        const="auto",
        default=None,
        choices=["auto", "float16", "bfloat16"],
        help="mixed precision; bare flag: float16 on GPU, bfloat16 on CPU (default: off)",
    )
    group.add_argument(
        "--cache-budget-bytes",
        type=int,
        default=2 * 1024**3,
        help="cache decoded images in memory when a split fits (default: %(default)s)",
    )

    export = commands.add_parser("export", help="export a finished run's best model and validate it")
    export_group = trainer_cli.add_export_command_arguments(export)
    _add_tf_export_flags(export_group)
    add_jit_compile_argument(export_group)  # export --jit-compile: the XLA-vs-Keras check only

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

    dynamic = commands.add_parser(
        "dynamic-bench", help="dynamic-shape exports over a set of sizes: accuracy, latency vs fixed"
    )
    trainer_cli.add_dynamic_bench_arguments(dynamic)
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
        trainer_cli.check_recipe(args)
        if trainer_cli.skip_existing(args, model_name("tensorflow", args.model)):
            return 0
        from trainer_tf.train import default_run_dir, train

        # --repeats N: one run per seed, one after another; the first seed's model is the exported one.
        runs = trainer_cli.repeat_runs(args, default_run_dir(args.model))
        run_dirs = {run.seed: train(run) for run in runs}
        if len(runs) > 1:
            from imgbench.training_log import write_repeats

            log.info("wrote %s", write_repeats(Path(runs[0].output_dir).parent, run_dirs))
        if not args.no_export:
            from trainer_tf.export import export_run

            export_run(run_dirs[runs[0].seed], runs[0])
        elif args.jit_compile:  # otherwise the export runs the check, before it publishes anything
            from trainer_tf.export import check_xla

            check_xla(run_dirs[runs[0].seed], args, stage="train")
    elif args.command == "export":
        from trainer_tf.export import export_run

        export_run(args.run_dir, args)
    elif args.command == "bench":
        from trainer_tf.bench import run_bench

        run_bench(args)
    elif args.command == "dynamic-bench":
        from trainer_tf.dynamic import run_bench as dynamic_bench

        dynamic_bench(args)
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
