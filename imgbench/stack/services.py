"""What the stack runner can start: one builder per service, turning a stack context into a
command line, environment and readiness probe. Each container runs the same command.

Later services (model servers, the load generator) add their builder to ``SERVICES``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.errors import StackError
from imgbench.ports import LOOPBACK
from imgbench.stack import prometheus_config
from imgbench.stack.ports import PortMap
from imgbench.stack.readiness import Probe, http_ok


@dataclass(frozen=True)
class StackContext:
    """What every builder may read: where to write, which ports, which model repository."""

    run_dir: Path
    ports: PortMap
    model_repository: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def service_dir(self, service: str) -> Path:
        path = self.run_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    ready: Probe
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    description: str
    build: Callable[[StackContext], LaunchPlan]


def require_executable(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' is not installed: {hint}")
    return path


def _prometheus(ctx: StackContext) -> LaunchPlan:
    binary = require_executable("prometheus", "run `make setup` (Debian package 'prometheus')")
    workdir = ctx.service_dir("prometheus")
    config_path = prometheus_config.write_native_config(workdir, ctx.ports)
    port = ctx.ports["prometheus"]["http"]
    return LaunchPlan(
        argv=[
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=7d",
        ],
        ready=http_ok(f"http://{LOOPBACK}:{port}/-/ready"),
    )


def _pushgateway(ctx: StackContext) -> LaunchPlan:
    binary = require_executable(
        "prometheus-pushgateway", "run `make setup` (Debian package 'prometheus-pushgateway')"
    )
    port = ctx.ports["pushgateway"]["http"]
    # Debian's build persists to /var/lib/prometheus/pushgateway.data by default: every stack would
    # load (and overwrite) the groups pushed by every other one. Each stack keeps its own.
    persistence = ctx.service_dir("pushgateway") / "pushgateway.data"
    return LaunchPlan(
        argv=[binary, f"--web.listen-address={LOOPBACK}:{port}", f"--persistence.file={persistence}"],
        ready=http_ok(f"http://{LOOPBACK}:{port}/-/ready"),
    )


def _model_server_specs() -> list[ServiceSpec]:
    # Imported here: model_servers imports this module for LaunchPlan/StackContext.
    from imgbench.stack.model_servers import BUILDERS

    return [ServiceSpec(name, description, build) for name, (description, build) in BUILDERS.items()]


def _loadgen_spec() -> ServiceSpec:
    from imgbench.stack import loadgen

    return ServiceSpec("loadgen", loadgen.DESCRIPTION, loadgen.build)


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("prometheus", "Prometheus, scraping every service of the stack", _prometheus),
        ServiceSpec("pushgateway", "Prometheus Pushgateway, for metrics of short runs", _pushgateway),
        *_model_server_specs(),
        _loadgen_spec(),
    )
}

# Built but not yet startable natively; `stack up` names them instead of failing obscurely.
PLANNED_SERVICES: dict[str, str] = {}


def get_spec(name: str) -> ServiceSpec:
    if name in SERVICES:
        return SERVICES[name]
    if name in PLANNED_SERVICES:
        raise StackError(f"{PLANNED_SERVICES[name]} cannot be started natively yet: it is not built")
    raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
