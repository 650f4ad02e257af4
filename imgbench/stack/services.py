"""What the stack runner can start: one builder per service, turning a stack context into a
command line, environment and readiness probe. Each container runs the same command.

The model servers come from the server registry (``imgbench.servers``): each spec names its builder.
"""

from __future__ import annotations

from imgbench import servers
from imgbench.errors import StackError
from imgbench.ports import LOOPBACK
from imgbench.stack import loadgen, prometheus_config
from imgbench.stack.plan import LaunchPlan, ServiceSpec, StackContext, require_executable
from imgbench.stack.readiness import http_ok

__all__ = ["SERVICES", "LaunchPlan", "ServiceSpec", "StackContext", "build_services", "get_spec"]


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


def model_server_specs() -> list[ServiceSpec]:
    """One service per registered model server, built by the function its spec names."""
    return [
        ServiceSpec(name, spec.description, servers.resolve(spec.launch))
        for name, spec in servers.SERVERS.items()
    ]


def build_services() -> dict[str, ServiceSpec]:
    """Prometheus, the Pushgateway, every registered model server, the load generator."""
    return {
        spec.name: spec
        for spec in (
            ServiceSpec("prometheus", "Prometheus, scraping every service of the stack", _prometheus),
            ServiceSpec("pushgateway", "Prometheus Pushgateway, for metrics of short runs", _pushgateway),
            *model_server_specs(),
            ServiceSpec("loadgen", loadgen.DESCRIPTION, loadgen.build),
        )
    }


SERVICES: dict[str, ServiceSpec] = build_services()

# Built but not yet startable natively; `stack up` names them instead of failing obscurely.
PLANNED_SERVICES: dict[str, str] = {}


def get_spec(name: str) -> ServiceSpec:
    if name in SERVICES:
        return SERVICES[name]
    if name in PLANNED_SERVICES:
        raise StackError(f"{PLANNED_SERVICES[name]} cannot be started natively yet: it is not built")
    raise StackError(f"unknown service {name!r}; known: {', '.join(SERVICES)}")
