"""Entry point; flags follow tensorflow_model_server's names where it has them."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from tfserving_standin import IMPLEMENTATION_LABEL, NAME
from tfserving_standin.config import ModelEntry, models_config_text, read_batching, read_models_config
from tfserving_standin.metrics import METRICS_PATH, Metrics, serve_http
from tfserving_standin.models import ModelManager
from tfserving_standin.server import ModelService, PredictionService, rest_status

log = logging.getLogger("tfserving_standin")
BATCHING_FILE_NAMES = ("batching_parameters.txt", "batching.config", "batching_parameters.config")


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, add_help=add_help)
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument(
        "--rest_api_port", type=int, default=8501, help="metrics and status port (default 8501)"
    )
    parser.add_argument("--bind_address", default="127.0.0.1", help="stand-in only; default 127.0.0.1")
    parser.add_argument("--model_config_file", type=Path, help="models.config (ModelServerConfig text proto)")
    parser.add_argument(
        "--model_repository",
        type=Path,
        help="stand-in only: write --model_config_file listing every <repo>/tfserving/<model> first",
    )
    parser.add_argument("--model_name", help="single model mode: its name (with --model_base_path)")
    parser.add_argument("--model_base_path", type=Path, help="single model mode: its base path")
    parser.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=1.0, help="default 1; 0 = never"
    )
    parser.add_argument("--enable_batching", action="store_true", help="server-side batching (default off)")
    parser.add_argument("--batching_parameters_file", type=Path, help="BatchingParameters text proto")
    parser.add_argument("--tensorflow_intra_op_parallelism", type=int, default=1, help="default 1")
    parser.add_argument("--tensorflow_inter_op_parallelism", type=int, default=1, help="default 1")
    parser.add_argument("--grpc_max_threads", type=int, default=32, help="default 32")
    parser.add_argument("--max_message_bytes", type=int, default=256 * 1024 * 1024, help="default 256 MiB")
    return parser


def model_entries(args: argparse.Namespace) -> list[ModelEntry]:
    if args.model_name and args.model_base_path:
        return [ModelEntry(args.model_name, args.model_base_path.resolve())]
    if args.model_config_file is None:
        raise SystemExit("pass --model_config_file (or --model_name with --model_base_path)")
    if args.model_repository is not None:
        tfserving_dir = args.model_repository.resolve() / "tfserving"
        models = (
            {p.name: p for p in sorted(tfserving_dir.iterdir()) if p.is_dir()}
            if tfserving_dir.is_dir()
            else {}
        )
        if not models:
            raise SystemExit(f"no model folders in {tfserving_dir}")
        args.model_config_file.parent.mkdir(parents=True, exist_ok=True)
        args.model_config_file.write_text(models_config_text(models))
    return read_models_config(args.model_config_file)


def batching_file(args: argparse.Namespace) -> Path | None:
    if args.batching_parameters_file or args.model_repository is None:
        return args.batching_parameters_file
    # The trainer writes TF Serving's config files at the tfserving/ root; use its batching file.
    candidates = [args.model_repository / "tfserving" / name for name in BATCHING_FILE_NAMES]
    return next((path for path in candidates if path.is_file()), None)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format=f"[{NAME}] %(asctime)s %(levelname)s %(message)s", stream=sys.stdout
    )
    tf.config.threading.set_intra_op_parallelism_threads(args.tensorflow_intra_op_parallelism)
    tf.config.threading.set_inter_op_parallelism_threads(args.tensorflow_inter_op_parallelism)
    log.warning(
        "This is the %s (%s), NOT TensorFlow Serving: its gRPC API served by TensorFlow %s in Python.",
        NAME,
        IMPLEMENTATION_LABEL,
        tf.__version__,
    )
    entries = model_entries(args)
    batching = read_batching(batching_file(args)) if args.enable_batching else None
    log.info("models: %s; batching: %s", {e.name: str(e.base_path) for e in entries}, batching or "off")
    metrics = Metrics(tf.__version__)
    models = ModelManager(entries, batching, metrics)
    models.refresh()
    models.start_polling(args.file_system_poll_wait_seconds)

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.grpc_max_threads, thread_name_prefix="grpc"),
        options=[
            ("grpc.max_send_message_length", args.max_message_bytes),
            ("grpc.max_receive_message_length", args.max_message_bytes),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(models, metrics, batching.max_batch_size if batching else None), server
    )
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(models), server)
    server.add_insecure_port(f"{args.bind_address}:{args.port}")
    server.start()
    http = serve_http(args.bind_address, args.rest_api_port, metrics, lambda name: rest_status(models, name))
    log.info(
        "gRPC on %s:%s, metrics on http://%s:%s%s",
        args.bind_address,
        args.port,
        args.bind_address,
        args.rest_api_port,
        METRICS_PATH,
    )

    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    log.info("stopping")
    models.stop()
    http.shutdown()
    server.stop(grace=5).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
