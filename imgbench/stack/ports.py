"""Port maps for a stack: the defaults, or free ports so tests and parallel runs never collide."""

from __future__ import annotations

import socket
from contextlib import ExitStack

from imgbench.errors import PortInUseError
from imgbench.ports import LOOPBACK, default_ports

PortMap = dict[str, dict[str, int]]


def default_port_map() -> PortMap:
    return {service: dict(ports) for service, ports in default_ports().items()}


def free_port_map() -> PortMap:
    """Every service's ports replaced by distinct free ports on 127.0.0.1.

    All sockets stay open until every port is chosen, so no two names get the same number.
    """
    result: PortMap = {}
    with ExitStack() as sockets:
        for service, ports in default_ports().items():
            result[service] = {}
            for name in ports:
                sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                sock.bind((LOOPBACK, 0))
                result[service][name] = sock.getsockname()[1]
    return result


def ensure_ports_free(service: str, ports: dict[str, int]) -> None:
    """Raise ``PortInUseError`` naming the service if any of its ports is taken."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As the servers themselves do: a port whose old connections sit in TIME_WAIT is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                raise PortInUseError(
                    f"{service}: port {port} ({name}) on {LOOPBACK} is already in use; "
                    f"stop whatever holds it (`ss -ltnp 'sport = :{port}'`) or run with other ports"
                ) from None
