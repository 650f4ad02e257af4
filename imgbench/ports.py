"""Every service's default ports, defined once. Native mode binds them on 127.0.0.1;
containers and Kubernetes use the same numbers inside their networks.

Tests and parallel runs override them (see ``imgbench.stack``) with free ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from imgbench import servers

LOOPBACK: Final = "127.0.0.1"

# Services that are not model servers; the model servers' ports are in imgbench.servers.
SUPPORT_PORTS: Final = MappingProxyType(
    {
        "loadgen": MappingProxyType({"web": 8089, "metrics": 9646}),
        "prometheus": MappingProxyType({"http": 9090}),
        "pushgateway": MappingProxyType({"http": 9091}),
        "grafana": MappingProxyType({"http": 3000}),
    }
)


def default_ports() -> Mapping[str, Mapping[str, int]]:
    """Every service's default ports: each registered model server's, then the support services'."""
    model_servers = {name: MappingProxyType(dict(spec.ports)) for name, spec in servers.SERVERS.items()}
    return MappingProxyType({**model_servers, **SUPPORT_PORTS})


DEFAULT_PORTS: Final = default_ports()
"""``default_ports()`` at import; code that must see a server registered later calls the function."""


def default_port(service: str, name: str) -> int:
    """The default port ``name`` of ``service``.

    >>> default_port("triton", "grpc")
    8001
    """
    try:
        return default_ports()[service][name]
    except KeyError:
        known = {svc: sorted(ports) for svc, ports in default_ports().items()}
        raise KeyError(f"no port {name!r} for service {service!r}; known: {known}") from None
