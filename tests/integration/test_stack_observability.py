"""The stack runner with real Prometheus and Pushgateway processes on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import urllib.request
from pathlib import Path

import psutil
import pytest

from imgbench.errors import PortInUseError, StackError
from imgbench.stack import Stack
from imgbench.stack.ports import free_port_map
from imgbench.stack.services import SERVICES, LaunchPlan, ServiceSpec

pytestmark = pytest.mark.integration


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def _query(stack: Stack, promql: str) -> list[dict]:
    url = stack.url("prometheus", "http", "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    body = _get_json(url)
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_pushed_metric_reaches_prometheus_and_everything_stops(tmp_path: Path) -> None:
    stack = Stack(tmp_path / "stack", ports=free_port_map())
    with stack:
        stack.up(["prometheus", "pushgateway"])
        pids = {s.name: s.pid for s in stack.status()}
        assert all(s.running for s in stack.status())

        body = b"# TYPE imgbench_stack_probe gauge\nimgbench_stack_probe 42\n"
        push = urllib.request.Request(
            stack.url("pushgateway", "http", "/metrics/job/stack_test"), data=body, method="PUT"
        )
        with urllib.request.urlopen(push, timeout=5) as response:
            assert response.status in (200, 202)

        deadline = time.monotonic() + 30
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            result = _query(stack, 'imgbench_stack_probe{job="stack_test"}')
            time.sleep(0.5)
        assert result, "Prometheus never scraped the pushed metric from the Pushgateway"
        assert float(result[0]["value"][1]) == 42.0
        # honor_labels keeps the pusher's job label instead of the scrape job's.
        assert result[0]["metric"]["job"] == "stack_test"

    assert stack.status() == []
    for name, pid in pids.items():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name


def test_down_from_another_stack_object_stops_recorded_pids(tmp_path: Path) -> None:
    run_dir = tmp_path / "stack"
    first = Stack(run_dir, ports=free_port_map())
    try:
        first.up(["pushgateway"])
        pid = first.status()[0].pid
        # A second CLI invocation reads the state file: same ports, same PIDs.
        second = Stack(run_dir)
        assert second.ports == first.ports
        assert second.down() == ["pushgateway"]
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    finally:
        first.down()


def test_port_in_use_names_the_service(tmp_path: Path) -> None:
    ports = free_port_map()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports["pushgateway"]["http"]))
        squatter.listen()
        with (
            Stack(tmp_path / "stack", ports=ports) as stack,
            pytest.raises(PortInUseError, match="pushgateway: port"),
        ):
            stack.up(["pushgateway"])
        assert stack.status() == []


def test_service_that_dies_reports_its_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def doomed(_ctx) -> LaunchPlan:
        return LaunchPlan(argv=["sh", "-c", "echo 'config error: bad flag' >&2; exit 3"], ready=lambda: False)

    monkeypatch.setitem(SERVICES, "doomed", ServiceSpec("doomed", "exits at once", doomed))
    with Stack(tmp_path / "stack", ports=free_port_map()) as stack:
        with pytest.raises(StackError, match=r"(?s)doomed exited with code 3.*config error: bad flag"):
            stack.up(["doomed"])
        assert stack.status() == []


def test_stop_reaches_forked_children(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ready"

    def forking(_ctx) -> LaunchPlan:
        script = f"sleep 300 & sleep 300 & touch {marker}; wait"
        return LaunchPlan(argv=["sh", "-c", script], ready=marker.exists, stop_timeout_s=5)

    monkeypatch.setitem(SERVICES, "forking", ServiceSpec("forking", "forks workers", forking))
    stack = Stack(tmp_path / "stack", ports=free_port_map())
    stack.up(["forking"])
    leader = psutil.Process(stack.status()[0].pid)
    family = [leader, *leader.children(recursive=True)]
    assert len(family) == 3
    stack.down()
    _gone, alive = psutil.wait_procs(family, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_unknown_service_is_a_clear_error(tmp_path: Path) -> None:
    with (
        Stack(tmp_path / "stack", ports=free_port_map()) as stack,
        pytest.raises(StackError, match="unknown service"),
    ):
        stack.up(["nginx"])
