"""Every service's default ports, defined once. Native mode binds them on 127.0.0.1;
containers and Kubernetes use the same numbers inside their networks.

Tests and parallel runs override them (see ``imgbench.stack``) with free ports.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

LOOPBACK: Final = "127.0.0.1"

DEFAULT_PORTS: Final = MappingProxyType(
    {
        "torchserve": MappingProxyType(
            {"grpc": 7070, "grpc_management": 7071, "rest": 8080, "management": 8081, "metrics": 8082}
        ),
        "tfserving": MappingProxyType({"grpc": 8500, "rest": 8501}),
        "triton": MappingProxyType({"http": 8000, "grpc": 8001, "metrics": 8002}),
        "loadgen": MappingProxyType({"web": 8089, "metrics": 9646}),
        "prometheus": MappingProxyType({"http": 9090}),
        "pushgateway": MappingProxyType({"http": 9091}),
        "grafana": MappingProxyType({"http": 3000}),
    }
)


def default_port(service: str, name: str) -> int:
    """The default port ``name`` of ``service``.

    >>> default_port("triton", "grpc")
    8001
    """
    try:
        return DEFAULT_PORTS[service][name]
    except KeyError:
        known = {svc: sorted(ports) for svc, ports in DEFAULT_PORTS.items()}
        raise KeyError(f"no port {name!r} for service {service!r}; known: {known}") from None
