"""Readiness probes the stack runner polls until a service answers."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request
from collections.abc import Callable

from imgbench.ports import LOOPBACK

Probe = Callable[[], bool]


def http_ok(url: str, timeout: float = 2.0) -> Probe:
    """Ready when ``GET url`` answers 2xx."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return 200 <= response.status < 300
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    return probe


def tcp_open(port: int, host: str = LOOPBACK) -> Probe:
    """Ready when something accepts a TCP connection on ``host:port``."""

    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            return False

    return probe


def all_of(*probes: Probe) -> Probe:
    return lambda: all(p() for p in probes)
