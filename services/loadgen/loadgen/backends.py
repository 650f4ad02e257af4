"""The protocols the load generator speaks, as data derived from the server registry
(``imgbench.servers``): the backend name of ``imgbench.clients`` (one client class per protocol) and
its default port. ``health`` is the standard gRPC health check, for
measuring the load generator itself against a trivial server (the capacity benchmark), with nothing
to check in its answers.

A ``Sender`` sends one prepared request and says whether the answer was right; every protocol's
difference stays inside the client, which builds the request once, before the load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
import numpy as np

from imgbench import servers
from imgbench.ports import LOOPBACK, default_port


@dataclass(frozen=True)
class Backend:
    name: str
    port_service: str
    description: str


HEALTH = Backend("health", "", "grpc.health.v1 Check (load generator capacity only)")


def backends() -> dict[str, Backend]:
    """Every registered model server's protocol (``imgbench.servers``), then the health check."""
    model_servers = [Backend(name, name, spec.protocol) for name, spec in servers.SERVERS.items()]
    return {b.name: b for b in (*model_servers, HEALTH)}


BACKENDS: dict[str, Backend] = backends()
"""``backends()`` at import."""


def default_target(backend: str) -> str:
    """``IMGBENCH_<BACKEND>_HOST`` (compose, Kubernetes) or 127.0.0.1, at the backend's gRPC port."""
    spec = backends()[backend]
    if not spec.port_service:
        return ""
    host = os.environ.get(f"IMGBENCH_{backend.upper()}_HOST", LOOPBACK)
    return f"{host}:{default_port(spec.port_service, 'grpc')}"


def channel_settings(deadline_s: float) -> Any:
    """The clients' channel settings plus a short reconnect backoff: after a server restart, gRPC's
    default backoff (up to 120 s) would keep a channel failing long after the server is back."""
    from imgbench.clients.base import ChannelSettings

    @dataclass(frozen=True)
    class LoadChannelSettings(ChannelSettings):
        reconnect_backoff_ms: int = 250

        def options(self) -> list[tuple[str, Any]]:
            return [
                *super().options(),
                ("grpc.initial_reconnect_backoff_ms", self.reconnect_backoff_ms),
                ("grpc.min_reconnect_backoff_ms", self.reconnect_backoff_ms),
                ("grpc.max_reconnect_backoff_ms", 4 * self.reconnect_backoff_ms),
            ]

    return LoadChannelSettings(deadline_s=deadline_s)


def make_client(
    backend: str, target: str, model_repository: Any, deadline_s: float, token: str = "", key_file: str = ""
) -> Any:
    """An ``imgbench.clients`` client for ``backend`` (one channel). ``token`` is a fixed bearer key;
    ``key_file`` a TorchServe key file whose current inference key is sent (and re-read when renewed)."""
    from imgbench.clients import make_client as make_protocol_client
    from loadgen.options import torchserve_token

    credentials = (lambda: torchserve_token(key_file)) if key_file else ((lambda: token) if token else None)
    return make_protocol_client(
        backend, target, model_repository, settings=channel_settings(deadline_s), credentials=credentials
    )


@dataclass(frozen=True)
class Answer:
    size_bytes: int
    correct: bool | None
    """None when there is nothing to check (health)."""
    agrees: bool | None = None
    """Top-1 equal to the reference model's at rest for the same images; None without a reference."""


class Sender(Protocol):
    images_per_request: int

    def send(self, index: int) -> Answer:
        """Send prepared request ``index`` (modulo how many there are); raise on failure."""
        ...

    def close(self) -> None: ...


KNOWN_ANSWER_MAX_BYTES = 64 * 1024
"""Known-right answers up to this size are kept (per user, per prepared request) for the byte check."""


class InferenceSender:
    """Prepared requests of one model and the labels each answer must have.

    Each request is serialised once, before the load, and sent as those bytes on a generic unary call:
    no numpy array, message or serialisation per request. The answer is checked on its raw bytes where
    it can be: an answer byte-identical to one already found right for the same request is right (same
    logits, same top-1); any other is parsed and its top-1 compared with the labels, as before."""

    def __init__(
        self,
        client: Any,
        model: str,
        batches: list[tuple[np.ndarray, np.ndarray]],
        references: list[np.ndarray] | None = None,
    ) -> None:
        self.client = client
        self.model = model
        self.images_per_request = len(batches[0][1])
        self.requests = [client.serialized_request(model, batch) for batch, _ in batches]
        self.labels = [labels for _, labels in batches]
        self.references = references
        """Per request, the reference model's top-1s at rest (``--reference-model``), else None."""
        self.known: list[tuple[bytes, Answer] | None] = [None] * len(self.requests)

    def send(self, index: int) -> Answer:
        slot = index % len(self.requests)
        response: bytes = self.client.send_serialized(self.model, self.requests[slot])
        known = self.known[slot]
        if known is not None and known[0] == response:
            return known[1]
        return self.check(slot, response)

    def check(self, slot: int, response: bytes) -> Answer:
        """Parse ``response`` and compare its top-1 with the labels of request ``slot``."""
        logits = self.client.answer_of(self.model, response)
        labels = self.labels[slot]
        predicted = np.argmax(logits, axis=1)
        reference = self.references[slot] if self.references is not None else None
        answer = Answer(
            len(response),
            predicted.shape == labels.shape and bool(np.all(predicted == labels)),
            None
            if reference is None
            else predicted.shape == reference.shape and bool(np.all(predicted == reference)),
        )
        if answer.correct and answer.agrees is not False and len(response) <= KNOWN_ANSWER_MAX_BYTES:
            self.known[slot] = (response, answer)
        return answer

    def close(self) -> None:
        self.client.close()


HEALTH_CHECK_PATH = "/grpc.health.v1.Health/Check"


class HealthSender:
    """The health check, serialised once and sent as bytes like the model requests."""

    images_per_request = 0

    def __init__(self, target: str, deadline_s: float) -> None:
        from grpc_health.v1 import health_pb2

        self.channel = grpc.insecure_channel(target, options=channel_settings(deadline_s).options())
        self.check = self.channel.unary_unary(
            HEALTH_CHECK_PATH, request_serializer=None, response_deserializer=None
        )
        self.request = health_pb2.HealthCheckRequest(service="").SerializeToString()
        self.deadline_s = deadline_s
        self.answer = Answer(0, None)

    def send(self, index: int) -> Answer:
        response = self.check(self.request, timeout=self.deadline_s)
        if len(response) != self.answer.size_bytes:
            self.answer = Answer(len(response), None)
        return self.answer

    def close(self) -> None:
        self.channel.close()


def error_code(error: BaseException) -> str:
    """The gRPC status name of a failed call (InferenceError or a raw RpcError), else the type name."""
    code = getattr(error, "code", None)
    if callable(code):
        code = code()
    return code.name if isinstance(code, grpc.StatusCode) else type(error).__name__
