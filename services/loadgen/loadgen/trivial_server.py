"""A trivial gRPC server (the standard health service) for measuring the load generator itself.

python -m loadgen.trivial_server --port 50051 [--workers 8]
"""

from __future__ import annotations

import argparse
import signal
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address (default 127.0.0.1).")
    parser.add_argument("--port", type=int, required=True, help="Port.")
    parser.add_argument("--workers", type=int, default=8, help="Server threads (default 8).")
    return parser


def main(args: argparse.Namespace) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=args.workers))
    servicer = health.HealthServicer()
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    print(f"health server on {args.host}:{args.port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main(get_args_parser().parse_args())
