"""One exception for every failed inference call, whatever the protocol: the gRPC status code and
the server's own message, with server quirks normalised (differences as data, not code paths)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc

from imgbench.errors import ImgbenchError


class InferenceError(ImgbenchError):
    """A call to a model server failed. ``code`` is the gRPC status (after normalisation),
    ``server_message`` the server's text, unchanged."""

    def __init__(self, backend: str, model: str, code: grpc.StatusCode, server_message: str) -> None:
        self.backend = backend
        self.model = model
        self.code = code
        self.server_message = server_message
        super().__init__(f"{backend} model {model!r}: {code.name}: {server_message}")


@dataclass(frozen=True)
class StatusRewrite:
    """A server answers ``code_from`` with a message matching ``pattern`` where the meaning is ``code_to``."""

    backend: str
    code_from: grpc.StatusCode
    pattern: re.Pattern[str]
    code_to: grpc.StatusCode


STATUS_REWRITES: tuple[StatusRewrite, ...] = (
    # TorchServe 0.12 answers an unknown model or version with INTERNAL (docs/platform-notes.md).
    StatusRewrite(
        "torchserve",
        grpc.StatusCode.INTERNAL,
        re.compile(r"not found|does not exist", re.IGNORECASE),
        grpc.StatusCode.NOT_FOUND,
    ),
    # Triton answers an unknown model or version with UNAVAILABLE/INVALID_ARGUMENT depending on the path.
    StatusRewrite(
        "triton",
        grpc.StatusCode.UNAVAILABLE,
        re.compile(r"unknown model|is not found|has no available versions", re.IGNORECASE),
        grpc.StatusCode.NOT_FOUND,
    ),
    StatusRewrite(
        "triton",
        grpc.StatusCode.INVALID_ARGUMENT,
        re.compile(r"unknown model|is not found|has no available versions", re.IGNORECASE),
        grpc.StatusCode.NOT_FOUND,
    ),
)


def normalise_status(backend: str, code: grpc.StatusCode, message: str) -> grpc.StatusCode:
    for rewrite in STATUS_REWRITES:
        if rewrite.backend == backend and rewrite.code_from == code and rewrite.pattern.search(message):
            return rewrite.code_to
    return code


def from_rpc_error(backend: str, model: str, error: grpc.RpcError) -> InferenceError:
    """Wrap a failed gRPC call. ``error`` is a ``grpc.Call`` for real calls (code/details)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    return InferenceError(backend, model, normalise_status(backend, code, details), details)
