"""What every protocol client shares: the channel with deliberate options, deadlines on every call,
manifests as the source of tensor names/shapes, and error mapping. A protocol subclass supplies only
its messages (``_infer_request``, ``_logits``, ...) and its stub methods."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import grpc
import numpy as np

from imgbench import servers
from imgbench.clients.errors import InferenceError, from_rpc_error
from imgbench.clients.tensors import batch_problem
from imgbench.dynamic_shapes import served_manifest
from imgbench.load_results import ConfigValue, ServerIdentity
from imgbench.manifest import Manifest, load_manifest
from imgbench.parallelism import server_threads
from imgbench.paths import ModelRepository


@dataclass(frozen=True)
class ChannelSettings:
    """gRPC channel options and the per-call deadline."""

    # Batch 32 of 3×224×224 float32 is ~19 MB, above gRPC's 4 MB default; allow large batches.
    max_message_bytes: int = 256 * 1024 * 1024
    # Keepalive pings detect a dead server on an idle channel instead of hanging until the deadline.
    keepalive_time_ms: int = 30_000
    keepalive_timeout_ms: int = 10_000
    deadline_s: float = 30.0

    def options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            ("grpc.keepalive_time_ms", self.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", self.keepalive_timeout_ms),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            # One channel per client: don't let gRPC share sub-channels between clients of a benchmark.
            ("grpc.use_local_subchannel_pool", 1),
        ]


ManifestSource = ModelRepository | Path | Mapping[str, Manifest]

# A server that rejects a key (expired, renewed) answers one of these; TorchServe says PERMISSION_DENIED.
AUTHORIZATION_CODES = frozenset({grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED})


class InferenceClient(ABC):
    """One model server over gRPC.

    >>> from imgbench.clients import make_client
    >>> with make_client("triton", "127.0.0.1:8001", Path("model-repository")) as client:  # doctest: +SKIP
    ...     logits = client.infer("pt_resnet18", batch)          # [N, classes] float32
    """

    backend: ClassVar[str]
    infer_path: ClassVar[str]
    """The inference RPC's path (``/package.Service/Method``): ``send_serialized`` calls it with bytes."""
    infer_response: ClassVar[type[Any]]
    """The inference RPC's response message (``answer_of`` parses raw answers with it)."""

    def __init__(
        self,
        target: str,
        manifests: ManifestSource,
        *,
        settings: ChannelSettings | None = None,
        call_metadata: Sequence[tuple[str, str]] = (),
        credentials: Callable[[], str] | None = None,
        validate: bool = True,
    ) -> None:
        """``validate=False`` sends whatever it is given (the bad-input tests need that).
        ``credentials`` returns the current bearer key (e.g. re-read from TorchServe's key file): it is
        sent with every call, and asked again once when the server rejects a call's authorization, so a
        key the server renewed is picked up without losing the request."""
        self.target = target
        self.settings = settings or ChannelSettings()
        self.validate = validate
        self._base_metadata = tuple(call_metadata)
        self._credentials = credentials
        self._bearer = credentials() if credentials else ""
        self._call_metadata = self._metadata_with(self._bearer)
        self._manifests = self._manifest_loader(manifests)
        self._cache: dict[str, Manifest] = {}
        self.channel = grpc.insecure_channel(target, options=self.settings.options())
        self._bind(self.channel)

    @staticmethod
    def _manifest_loader(source: ManifestSource) -> Callable[[str], Manifest]:
        if isinstance(source, Mapping):
            return lambda model: source[model]
        repository = source if isinstance(source, ModelRepository) else ModelRepository(Path(source))
        return lambda model: load_manifest(repository.manifest_path(model))

    def manifest(self, model: str) -> Manifest:
        if model not in self._cache:
            # A served variant's input as that server model takes it (<model>_dynamic: any height/width).
            self._cache[model] = served_manifest(self._manifests(model), model)
        return self._cache[model]

    # -- the interface -------------------------------------------------------------------------
    def infer(self, model: str, batch: np.ndarray, version: int | None = None) -> np.ndarray:
        """Logits [N, classes] float32 for ``batch`` (layout/dtype of the model's manifest)."""
        return self.send(model, self.request(model, batch, version))

    def request(self, model: str, batch: np.ndarray, version: int | None = None) -> Any:
        """The protocol's request message for ``batch`` (public so tests can tamper with it)."""
        manifest = self.manifest(model)
        if self.validate and (problem := batch_problem(manifest, batch)):
            raise InferenceError(
                self.backend, model, grpc.StatusCode.INVALID_ARGUMENT, f"not sent: {problem}"
            )
        return self._infer_request(manifest, model, np.ascontiguousarray(batch), version)

    def send(self, model: str, request: Any) -> np.ndarray:
        return self._answer(model, self._call(self._infer_method, request, model))

    # -- serialised once (the load generator's path) -------------------------------------------
    def serialized_request(self, model: str, batch: np.ndarray, version: int | None = None) -> bytes:
        """``request(model, batch)`` as wire bytes, built once: ``send_serialized`` sends them as they
        are, so a load generator builds no numpy array or message per request."""
        return self.request(model, batch, version).SerializeToString()

    def send_serialized(self, model: str, request: bytes) -> bytes:
        """Send pre-serialised ``request`` bytes on a generic unary call (no serialiser on either side);
        the raw answer bytes. Deadline, credentials and error mapping as ``send``."""
        method = getattr(self, "_serialized_method", None)
        if method is None:
            method = self._serialized_method = self.channel.unary_unary(
                self.infer_path, request_serializer=None, response_deserializer=None
            )
        return self._call(method, request, model)  # type: ignore[no-any-return]

    def answer_of(self, model: str, response: bytes) -> np.ndarray:
        """The logits of a raw answer of ``send_serialized``, checked as ``send`` checks them."""
        return self._answer(model, self.infer_response.FromString(response))

    def _answer(self, model: str, response: Any) -> np.ndarray:
        logits = self._logits(response)
        if logits.ndim != 2:
            raise InferenceError(
                self.backend,
                model,
                grpc.StatusCode.INTERNAL,
                f"answer has shape {list(logits.shape)}, not [N, C]",
            )
        return logits

    @abstractmethod
    def ready(self, model: str | None = None) -> bool:
        """The server (and ``model``, if given) can serve now. Never raises for a down server."""

    @abstractmethod
    def metadata(self, model: str) -> dict[str, Any]:
        """{'backend', 'model', 'server', 'versions', 'inputs': [{name, dtype, shape}], 'outputs': [...]}"""

    def identify(self, model: str) -> ServerIdentity:
        """The server as it reports itself, for load results. A protocol whose server says nothing about
        itself (TorchServe's gRPC API has no version call) is named by what answered its health call."""
        spec = servers.get_server(self.backend)
        return ServerIdentity(backend=self.backend, implementation=spec.label, stand_in=False)

    def server_config(self, model: str) -> dict[str, ConfigValue]:
        """The settings ``model`` is served with (threads, workers, device), for load results. A server
        that cannot report them gets the ones imgbench configures for it (``imgbench.parallelism``),
        and ``config_source`` says which it is."""
        source = "imgbench defaults (not reported by the server)"
        return {**server_threads(self.backend), "config_source": source}

    # -- for subclasses ------------------------------------------------------------------------
    @abstractmethod
    def _bind(self, channel: grpc.Channel) -> None:
        """Create the stubs; set ``self._infer_method``."""

    _infer_method: Callable[..., Any]

    @abstractmethod
    def _infer_request(
        self, manifest: Manifest, model: str, batch: np.ndarray, version: int | None
    ) -> Any: ...

    @abstractmethod
    def _logits(self, response: Any) -> np.ndarray: ...

    @abstractmethod
    def payload(self, request: Any) -> bytes:
        """The tensor bytes inside ``request``."""

    @abstractmethod
    def with_payload(self, request: Any, payload: bytes) -> Any:
        """``request`` with its tensor bytes replaced (truncated/oversized payload tests)."""

    def _metadata_with(self, bearer: str) -> tuple[tuple[str, str], ...]:
        return (
            (*self._base_metadata, ("authorization", f"Bearer {bearer}")) if bearer else self._base_metadata
        )

    def _renewed_credentials(self) -> bool:
        """Ask ``credentials`` again; True when the key changed (the call is then worth retrying)."""
        if self._credentials is None:
            return False
        try:
            bearer = self._credentials()
        except Exception:  # unreadable right now: keep the old key, the call's own error stands
            return False
        if not bearer or bearer == self._bearer:
            return False
        self._bearer, self._call_metadata = bearer, self._metadata_with(bearer)
        return True

    def _call(
        self, method: Callable[..., Any], request: Any, model: str, deadline_s: float | None = None
    ) -> Any:
        timeout = deadline_s or self.settings.deadline_s
        try:
            return method(request, timeout=timeout, metadata=self._call_metadata)
        except grpc.RpcError as error:
            if error.code() in AUTHORIZATION_CODES and self._renewed_credentials():
                try:
                    return method(request, timeout=timeout, metadata=self._call_metadata)
                except grpc.RpcError as retried:
                    raise from_rpc_error(self.backend, model, retried) from None
            raise from_rpc_error(self.backend, model, error) from None

    def _probe(self, method: Callable[..., Any], request: Any) -> Any | None:
        """A readiness call: the answer, or None when the server is down or says no."""
        try:
            return self._call(method, request, "-", deadline_s=min(self.settings.deadline_s, 5.0))
        except InferenceError:
            return None

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
