"""Nothing of a native stack is reachable from another machine: every socket that the three model
servers, Prometheus, the Pushgateway and the load generator (and every process they fork) listen on
is bound to 127.0.0.1, and TorchServe registers models only from its model store."""

from __future__ import annotations

import ipaddress
import json
import shlex
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest
from serving_support import ServingStack

from imgbench.stack import Stack
from imgbench.stack.model_servers import torchserve_allowed_urls

pytestmark = pytest.mark.integration

OBSERVABILITY = ("pushgateway", "prometheus")


def bound_sockets(pid: int) -> dict[tuple[str, int], str]:
    """(address, port) -> "pid name proto" of every listening TCP and bound UDP socket of ``pid`` and
    its descendants."""
    leader = psutil.Process(pid)
    found = {}
    for member in (leader, *leader.children(recursive=True)):
        try:
            connections = member.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
        for conn in connections:
            listening = conn.status == psutil.CONN_LISTEN or (
                conn.type.name == "SOCK_DGRAM" and not conn.raddr
            )
            if listening and conn.laddr:
                found[(conn.laddr.ip, conn.laddr.port)] = f"{member.pid} {member.name()} {conn.type.name}"
    return found


def _ipv4(address: str) -> str:
    """127.0.0.1 for Java's IPv4-mapped ``::ffff:127.0.0.1`` (the same socket address), else as is."""
    mapped = getattr(ipaddress.ip_address(address), "ipv4_mapped", None)
    return str(mapped) if mapped else address


def _exposed(sockets: dict[tuple[str, int], str]) -> dict[tuple[str, int], str]:
    return {address: who for address, who in sockets.items() if _ipv4(address[0]) != "127.0.0.1"}


def test_every_socket_of_the_native_stack_is_bound_to_loopback(serving: ServingStack, tmp_path: Path) -> None:
    observed: dict[str, dict[tuple[str, int], str]] = {}
    for status in serving.stack.status():
        assert status.running, f"{status.name} is not running; log {status.log}"
        observed[status.name] = bound_sockets(status.pid)
    # Observability and the load generator (web UI waiting, exporter on) beside the same servers.
    server = next(iter(serving.startup_seconds))
    prefix = "pt" if server != "tfserving" else "tf"
    options = {
        "loadgen.backend": server,
        "loadgen.args": shlex.join(
            ["--model", serving.trained.models[prefix], "--dataset", str(serving.trained.dataset)]
        ),
    }
    with Stack(tmp_path / "stack", serving.ports, serving.trained.repository, options) as extra:
        extra.up([*OBSERVABILITY, "loadgen"])
        for status in extra.status():
            observed[status.name] = bound_sockets(status.pid)
    summary = {name: sorted(port for _, port in sockets) for name, sockets in observed.items()}
    print(f"listening ports: {summary}")
    for name, sockets in observed.items():
        assert sockets, f"{name} listens on nothing?"
        assert not _exposed(sockets), f"{name} listens beyond 127.0.0.1: {_exposed(sockets)}"
        # Every port of this stack's port map for the service is among them (the map is what is checked).
        expected = set(serving.ports.get(name, {}).values())
        assert expected <= {port for _, port in sockets}, f"{name}: {expected} vs {summary[name]}"


def _management(serving: ServingStack, method: str, path: str, **query: str) -> tuple[int, str]:
    base = f"http://127.0.0.1:{serving.ports['torchserve']['management']}"
    request = urllib.request.Request(f"{base}{path}?{urllib.parse.urlencode(query)}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _message(body: str) -> str:
    try:
        return str(json.loads(body).get("message", body))
    except ValueError:
        return body


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/evil.mar",
        "file:///etc/passwd",
        "file://{store}X/evil.mar",
        "file://{store}/../x.mar",
    ],
)
def test_torchserve_registers_models_only_from_its_model_store(serving: ServingStack, url: str) -> None:
    serving.target("torchserve")
    store = (Path(serving.trained.repository) / "torchserve").resolve()
    config = (serving.stack.run_dir / "torchserve" / "config.properties").read_text()
    (allowed,) = [line.split("=", 1)[1] for line in config.splitlines() if line.startswith("allowed_urls=")]
    assert allowed == torchserve_allowed_urls(store), allowed
    status, body = _management(serving, "POST", "/models", url=url.format(store=store), initial_workers="0")
    assert 400 <= status < 500, (status, body)
    print(f"{url}: {status} {_message(body)}")
    assert any(word in _message(body).lower() for word in ("allowed", "relative", "not found")), body


def test_torchserve_allowed_urls_admit_its_model_store(serving: ServingStack) -> None:
    serving.target("torchserve")
    store = (Path(serving.trained.repository) / "torchserve").resolve()
    mar = f"file://{store}/{serving.trained.models['pt']}.mar"
    status, body = _management(
        serving, "POST", "/models", url=mar, model_name="exposure_check", initial_workers="0"
    )
    # Past the allowlist TorchServe copies a URL's file into the store, where this one already is.
    if status == 200:
        _management(serving, "DELETE", "/models/exposure_check")
    else:
        assert "already exists" in _message(body), (status, body)
