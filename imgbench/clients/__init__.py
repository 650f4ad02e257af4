"""One client interface to the three model servers, over gRPC (extra ``clients``):
``infer(model, batch) -> logits``, ``ready()``, ``metadata()``; every failure is an ``InferenceError``
carrying the gRPC status code and the server's message.

    >>> from imgbench.clients import make_client
    >>> client = make_client("tfserving", "127.0.0.1:8500", Path("model-repository"))  # doctest: +SKIP
    >>> client.infer("tf_resnet18", batch).argmax(axis=1)                           # doctest: +SKIP

Protocol modules import lazily, so a venv without tritonclient can still use the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from imgbench.clients.base import ChannelSettings, InferenceClient
from imgbench.clients.errors import InferenceError

# backend name -> (module, class); the same names as the stack's services and imgbench.ports.
BACKENDS: dict[str, tuple[str, str]] = {
    "torchserve": ("imgbench.clients.torchserve", "TorchServeClient"),
    "triton": ("imgbench.clients.triton", "TritonClient"),
    "tfserving": ("imgbench.clients.tfserving", "TFServingClient"),
}


def client_class(backend: str) -> type[InferenceClient]:
    try:
        module, name = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown backend {backend!r}; known: {', '.join(BACKENDS)}") from None
    return getattr(importlib.import_module(module), name)


def make_client(backend: str, target: str, manifests: Any, **options: Any) -> InferenceClient:
    """A client of ``backend`` at ``target`` ('host:port'); ``manifests`` is a model repository path,
    a ``ModelRepository`` or a {model: Manifest} mapping. ``options`` go to the client class."""
    return client_class(backend)(target, manifests, **options)


__all__ = ["BACKENDS", "ChannelSettings", "InferenceClient", "InferenceError", "client_class", "make_client"]
