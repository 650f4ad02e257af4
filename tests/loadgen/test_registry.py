"""The load generator's protocols and Locust users derive from the server registry: a fake fourth
server registered once is a protocol it speaks, with a user class and a default target."""

from __future__ import annotations

from dataclasses import replace

import pytest
from loadgen import backends, users

from imgbench import servers


@pytest.fixture
def fake_server(monkeypatch: pytest.MonkeyPatch) -> servers.ServerSpec:
    spec = replace(
        servers.get_server("triton"),
        name="fake",
        label="Fake Server",
        protocol="Fake gRPC",
        ports={"grpc": 9500},
    )
    monkeypatch.setitem(servers.SERVERS, "fake", spec)
    return spec


def test_a_fourth_server_is_a_protocol_with_a_user(fake_server: servers.ServerSpec) -> None:
    assert backends.backends()["fake"] == backends.Backend("fake", "fake", "Fake gRPC")
    assert backends.default_target("fake") == "127.0.0.1:9500"
    fake_user = users.user_classes()["fake"]
    assert fake_user.__name__ == "FakeServerUser" and fake_user.backend == "fake"
    assert issubclass(fake_user, users.InferenceUser)


def test_the_three_servers_and_the_health_check() -> None:
    assert list(backends.backends()) == [*servers.SERVERS, "health"]
    assert [cls.__name__ for cls in users.USER_CLASSES.values()] == [
        "TorchServeUser",
        "TritonUser",
        "TFServingUser",
    ]
