"""One client interface to the three model servers, over gRPC (extra ``clients``):
``infer(model, batch) -> logits``, ``ready()``, ``metadata()``; every failure is an ``InferenceError``
carrying the gRPC status code and the server's message.

    >>> from imgbench.clients import make_client
    >>> client = make_client("tfserving", "127.0.0.1:8500", Path("model-repository"))  # doctest: +SKIP
    >>> client.infer("tf_resnet18", batch).argmax(axis=1)                           # doctest: +SKIP

Protocol modules import lazily, so a venv without tritonclient can still use the others.
"""

from __future__ import annotations

from typing import Any

from imgbench import servers
from imgbench.clients.base import ChannelSettings, InferenceClient
from imgbench.clients.errors import InferenceError


def backends() -> dict[str, str]:
    """backend name -> 'module:Class' of its client, from the server registry (``imgbench.servers``)."""
    return {name: spec.client for name, spec in servers.SERVERS.items()}


BACKENDS: dict[str, str] = backends()
"""``backends()`` at import."""


def client_class(backend: str) -> type[InferenceClient]:
    known = backends()
    if backend not in known:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(known)}")
    return servers.resolve(known[backend])


def make_client(backend: str, target: str, manifests: Any, **options: Any) -> InferenceClient:
    """A client of ``backend`` at ``target`` ('host:port'); ``manifests`` is a model repository path,
    a ``ModelRepository`` or a {model: Manifest} mapping. ``options`` go to the client class."""
    return client_class(backend)(target, manifests, **options)


__all__ = ["BACKENDS", "ChannelSettings", "InferenceClient", "InferenceError", "client_class", "make_client"]
