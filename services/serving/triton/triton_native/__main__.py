"""Run native Triton over a model repository and keep its python-backend copy in sync.

    .venv/triton/bin/python -m triton_native --model-repository DIR --workdir RUN/triton \\
        --http-port 8000 --grpc-port 8001 --metrics-port 8002

(with ``services/serving/triton`` on PYTHONPATH; the stack runner does this). The process stays the
parent of tritonserver: it re-syncs ``triton-python/`` from ``triton/`` every ``--poll-seconds`` so
that a new ONNX version reaches Triton's own repository poll, and forwards SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytriton

from imgbench.paths import ModelRepository
from imgbench.ports import LOOPBACK
from triton_native.repository import sync

log = logging.getLogger("triton_native")
PYTRITON = Path(pytriton.__file__).resolve().parent
TRITON_HOME = PYTRITON / "tritonserver"
PYTHON_TAG = f"{sys.version_info.major}.{sys.version_info.minor}"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, add_help=add_help)
    parser.add_argument("--model-repository", type=Path, required=True, help="imgbench model repository root")
    parser.add_argument("--workdir", type=Path, required=True, help="where the backends folder is assembled")
    parser.add_argument("--http-port", type=int, default=8000, help="default 8000")
    parser.add_argument("--grpc-port", type=int, default=8001, help="default 8001")
    parser.add_argument("--metrics-port", type=int, default=8002, help="default 8002")
    parser.add_argument("--address", default=LOOPBACK, help=f"bind address (default {LOOPBACK})")
    parser.add_argument(
        "--python-repository",
        type=Path,
        help="where the python-backend copy of triton/ is assembled (default: "
        "<model-repository>/triton-python; containers pass a folder of their own, the model repository "
        "being read-only there)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        help="ready configs, <config-dir>/<model>/config.pbtxt, replacing the repository's (e.g. the "
        "triton/ folder of `imgbench tune`'s RUN_DIR/best); default: none",
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=2.0, help="repository poll interval (default 2)"
    )
    return parser


def backend_directory(workdir: Path) -> Path:
    """The bundled python backend plus the stub built for this interpreter's Python version."""
    backends = workdir / "backends"
    python_dir = backends / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    stub = TRITON_HOME / "python_backend_stubs" / PYTHON_TAG / "triton_python_backend_stub"
    if not stub.exists():
        raise SystemExit(f"nvidia-pytriton has no python backend stub for Python {PYTHON_TAG} ({stub})")
    for source in [*(TRITON_HOME / "backends" / "python").glob("*.*"), stub]:
        if source.is_file() and not (python_dir / source.name).exists():
            (python_dir / source.name).symlink_to(source)
    return backends


def server_environment() -> dict[str, str]:
    venv_bin = str(Path(sys.executable).parent)
    libs = [str(PYTRITON.parent / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR")]
    return {
        **os.environ,
        # The stub must load this interpreter's libpython, not Debian's (RLock '_recursion_count' error).
        "LD_LIBRARY_PATH": ":".join([*libs, os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":"),
        # The stub finds onnxruntime through the first python on PATH: this venv's.
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
    }


def server_argv(args: argparse.Namespace, python_repository: Path, backends: Path) -> list[str]:
    return [
        str(TRITON_HOME / "bin" / "tritonserver"),
        f"--model-repository={python_repository}",
        f"--backend-directory={backends}",
        f"--http-address={args.address}",
        f"--http-port={args.http_port}",
        f"--grpc-address={args.address}",
        f"--grpc-port={args.grpc_port}",
        f"--metrics-address={args.address}",
        f"--metrics-port={args.metrics_port}",
        "--allow-gpu-metrics=false",
        "--model-control-mode=poll",
        f"--repository-poll-secs={max(1, round(args.poll_seconds))}",
        # A model that fails to load must not take the others down with it.
        "--exit-on-error=false",
        # ...and the server stays ready: clients check each model's own readiness (the loadgen's
        # preflight does), so one bad model never blocks the others.
        "--strict-readiness=false",
        "--log-info=true",
    ]


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="[triton_native] %(message)s", stream=sys.stdout)
    repository = ModelRepository(args.model_repository.resolve())
    python_repository = (args.python_repository or repository.triton_python_dir).resolve()
    config_dir = args.config_dir.resolve() if args.config_dir else None
    result = sync(repository, python_repository, config_dir)
    python_repository.mkdir(parents=True, exist_ok=True)
    log.info("serving %s from %s (python backend + ONNX Runtime)", result.models, python_repository)
    argv = server_argv(args, python_repository, backend_directory(args.workdir.resolve()))
    log.info("starting %s", " ".join(argv))
    server = subprocess.Popen(argv, env=server_environment())

    def forward(signum: int, _frame: object) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while server.poll() is None:
        time.sleep(args.poll_seconds)
        try:
            sync(repository, python_repository, config_dir)
        except Exception as exc:  # a half-written export must not stop a serving Triton
            log.warning("repository sync failed, will retry: %s", exc)
    return server.returncode


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
