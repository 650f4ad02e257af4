"""The load generator as a stack service: Locust from the loadgen venv (``python -m loadgen``, the
container's entry point), its web UI and Prometheus exporter on this stack's ports, pointed at this
stack's model server, model repository and Pushgateway.

Stack options (``Stack(options=...)``):
- ``loadgen.backend``: a server of ``imgbench.servers`` (default: $IMGBENCH_BACKEND, else triton); the
  target is that service's gRPC port in this stack;
- ``loadgen.args``: more loadgen/Locust arguments, e.g. ``--headless --model pt_resnet18 --mode open``.
Without ``--headless`` the web UI waits for a test to be started (http://127.0.0.1:8089).
Ready when the exporter answers, which is after the preflight checks passed.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

from imgbench import servers
from imgbench.errors import StackError
from imgbench.paths import project_root, venv_bin
from imgbench.ports import LOOPBACK
from imgbench.stack.plan import LaunchPlan, StackContext
from imgbench.stack.readiness import http_ok

BACKEND_OPTION = "loadgen.backend"
ARGS_OPTION = "loadgen.args"
DESCRIPTION = "Locust load generator (gRPC users, HdrHistogram results, Prometheus exporter)"


def build(ctx: StackContext) -> LaunchPlan:
    python = venv_bin("loadgen") / "python"
    if not python.exists():
        raise StackError(f"the loadgen venv is missing ({python}); run `scripts/setup.sh loadgen`")
    backend = ctx.options.get(BACKEND_OPTION) or os.environ.get("IMGBENCH_BACKEND", "triton")
    ports = ctx.ports["loadgen"]
    workdir = ctx.service_dir("loadgen")
    env = {"PYTHONUNBUFFERED": "1", "IMGBENCH_BACKEND": backend}
    if backend in ctx.ports and "grpc" in ctx.ports[backend]:
        env["IMGBENCH_TARGET"] = f"{LOOPBACK}:{ctx.ports[backend]['grpc']}"
    if ctx.model_repository is not None:
        env["IMGBENCH_MODEL_REPOSITORY"] = str(Path(ctx.model_repository).resolve())
    if "pushgateway" in ctx.ports:
        env["IMGBENCH_PUSHGATEWAY_URL"] = f"http://{LOOPBACK}:{ctx.ports['pushgateway']['http']}"
    spec = servers.SERVERS.get(backend)
    if spec is not None and spec.metrics_port in ctx.ports.get(backend, {}):
        # The server's own view of each point (loadgen/server_side.py) reads this stack's metrics port.
        port = ctx.ports[backend][spec.metrics_port]
        env["IMGBENCH_SERVER_METRICS_URL"] = f"http://{LOOPBACK}:{port}{spec.metrics_path}"
    key_file = ctx.run_dir / backend / spec.auth_key_file if spec and spec.auth_key_file else None
    if key_file is not None and key_file.exists():
        env[f"IMGBENCH_{backend.upper()}_KEY_FILE"] = str(key_file)
    argv = [
        str(python), "-m", "loadgen",
        "--web-host", LOOPBACK, "--web-port", str(ports["web"]),
        "--metrics-host", LOOPBACK, "--metrics-port", str(ports["metrics"]),
        "--results-dir", str(workdir / "results"),
        *shlex.split(ctx.options.get(ARGS_OPTION, "")),
    ]  # fmt: skip
    return LaunchPlan(
        argv=argv,
        ready=http_ok(f"http://{LOOPBACK}:{ports['metrics']}/metrics"),
        env=env,
        cwd=project_root(),
        # The preflight waits up to 30 s for the server and sends every pool image once.
        startup_timeout_s=120.0,
        stop_timeout_s=15.0,
    )
