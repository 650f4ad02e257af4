"""gRPC stubs generated at setup (scripts/setup.sh: generate_grpc_stubs) into the git-ignored package
``imgbench.clients._generated``: TF Serving's and TorchServe's protos, with imports rewritten under
that package so that no ``tensorflow`` package is needed (or shadowed) in a client venv."""

from __future__ import annotations

import importlib
from types import ModuleType

GENERATED_PACKAGE = "imgbench.clients._generated"


def stub_module(name: str) -> ModuleType:
    """``stub_module("tensorflow_serving.apis.predict_pb2")``."""
    try:
        return importlib.import_module(f"{GENERATED_PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        raise ImportError(
            f"generated gRPC stub {name!r} is missing ({exc}); natively, `scripts/setup.sh core` generates "
            "imgbench/clients/_generated/ (images generate it in their build: services/loadgen/Dockerfile)"
        ) from None
