"""The server registry (imgbench.servers) drives every list that names servers: a fake fourth server,
registered once, appears in each of them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from imgbench import servers
from imgbench.clients import backends as client_backends
from imgbench.clients import client_class
from imgbench.clients.base import InferenceClient
from imgbench.observability import backends as metric_backends
from imgbench.ports import default_port, default_ports
from imgbench.servers import InProcessBaseline, ServerSpec
from imgbench.stack import model_servers, prometheus_config
from imgbench.stack.plan import LaunchPlan, StackContext
from imgbench.stack.ports import default_port_map, free_port_map
from imgbench.stack.services import build_services


class FakeClient(InferenceClient):
    """Stands for a fourth server's client; never instantiated here."""

    backend = "fake"


def fake_plan(ctx: StackContext) -> LaunchPlan:
    return LaunchPlan(argv=["fake-server", f"--port={ctx.ports['fake']['grpc']}"], ready=lambda: True)


FAKE = ServerSpec(
    name="fake",
    label="Fake Server",
    native_stand_in=True,
    native_note="the fake server is a stand-in",
    frameworks=("tf",),
    venv="core",
    ports={"grpc": 9500, "metrics": 9502},
    client=f"{__name__}:FakeClient",
    protocol="Fake gRPC",
    launch=f"{__name__}:fake_plan",
    description="a fourth server, for the registry test",
    metrics_port="metrics",
    metrics_path="/fake-metrics",
    baseline=InProcessBaseline("savedmodel", lambda repo, model, version: Path("/fake"), "Fake, SavedModel"),
)


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> ServerSpec:
    monkeypatch.setitem(servers.SERVERS, FAKE.name, FAKE)
    return FAKE


def test_a_fourth_server_appears_in_every_derived_list(fake_server: ServerSpec) -> None:
    # ports
    assert dict(default_ports()["fake"]) == {"grpc": 9500, "metrics": 9502}
    assert default_port("fake", "grpc") == 9500
    assert default_port_map()["fake"] == {"grpc": 9500, "metrics": 9502}
    assert set(free_port_map()["fake"]) == {"grpc", "metrics"}
    # metric labels, clients
    assert "fake" in metric_backends()
    assert client_backends()["fake"] == f"{__name__}:FakeClient"
    assert client_class("fake").__name__ == "FakeClient"
    # the stack: a service built by the spec's launch builder, and a scrape job for it
    service = build_services()["fake"]
    assert service.description == FAKE.description
    assert service.build(StackContext(Path("/tmp/unused"), free_port_map())).argv[0] == "fake-server"
    assert model_servers.builders()["fake"][1] is fake_plan
    assert prometheus_config.scrape_jobs()["fake"] == ("fake", "metrics", "/fake-metrics")
    config = prometheus_config.native_config(free_port_map(), [])
    fake_job = next(job for job in config["scrape_configs"] if job["job_name"] == "fake")  # type: ignore[index, union-attr]
    assert fake_job["metrics_path"] == "/fake-metrics"
    # the demo and the bench
    from imgbench import demo
    from imgbench.bench import serving as bench_serving

    assert "fake" in demo.stack_services()
    assert demo.load_cases()["fake"] == ("tf",)
    assert "fake" in demo.DemoSettings(run_dir=Path("/tmp/unused")).backends
    assert ("fake", "tf_resnet18") in servers.load_cases("resnet18")
    assert servers.default_model("fake", "resnet18") == "tf_resnet18"
    assert bench_serving.bench_servers()["fake"][1].runtime == "Fake, SavedModel"


def test_without_the_fake_the_lists_are_the_three_servers() -> None:
    assert metric_backends() == ("torchserve", "triton", "tfserving")
    assert set(client_backends()) == set(servers.SERVERS)
    assert {"torchserve", "triton", "tfserving"} <= set(build_services())
    assert "fake" not in default_ports()


@pytest.mark.parametrize("name", sorted(servers.SERVERS))
def test_every_spec_resolves_and_is_consistent(name: str) -> None:
    spec = servers.get_server(name)
    assert "grpc" in spec.ports, f"{name}: every client speaks gRPC"
    assert spec.metrics_port in spec.ports, f"{name}: metrics port {spec.metrics_port!r} not in {spec.ports}"
    assert callable(servers.resolve(spec.launch))
    assert spec.frameworks and all(p in ("pt", "tf") for p in spec.frameworks)
    names = [k.name for k in spec.knobs]
    assert len(names) == len(set(names)), f"{name}: duplicate knob in {names}"


def test_unknown_server_and_bad_reference_name_the_value() -> None:
    with pytest.raises(ValueError, match="unknown server 'nope'; known: torchserve"):
        servers.get_server("nope")
    with pytest.raises(ValueError, match="'no-colon'"):
        servers.resolve("no-colon")
    with pytest.raises(ValueError, match="has no attribute 'missing'"):
        servers.resolve("imgbench.servers:missing")


def test_only_the_native_tfserving_is_a_stand_in() -> None:
    assert [s.name for s in servers.SERVERS.values() if s.native_stand_in] == ["tfserving"]
    assert replace(FAKE, native_stand_in=False).native_stand_in is False
