"""The clients without servers: error mapping to one exception, local validation, channel options,
TorchServe config rendering and native Triton's python-backend assembly."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

pytest.importorskip("tritonclient.grpc", reason="needs the clients extra (scripts/setup.sh core)")

from factories import make_manifest

from imgbench.clients import BACKENDS, ChannelSettings, InferenceError, client_class, make_client
from imgbench.clients.errors import from_rpc_error, normalise_status
from imgbench.clients.tensors import batch_problem, wire_dtype
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository, project_root
from imgbench.stack.model_servers import render_torchserve_config
from imgbench.triton_config import TritonModelSpec, render_config

CODE = grpc.StatusCode
GENERATED = (project_root() / "imgbench" / "clients" / "_generated" / "__init__.py").exists()


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("backend", "code", "message", "expected"),
    [
        ("torchserve", CODE.INTERNAL, "Model not found: pt_x", CODE.NOT_FOUND),
        ("torchserve", CODE.INTERNAL, "Model version: 7.0 does not exist for model: pt_x", CODE.NOT_FOUND),
        ("torchserve", CODE.INTERNAL, "Worker died.", CODE.INTERNAL),
        ("triton", CODE.UNAVAILABLE, "Request for unknown model: 'pt_x' is not found", CODE.NOT_FOUND),
        ("triton", CODE.UNAVAILABLE, "failed to connect to all addresses", CODE.UNAVAILABLE),
        ("tfserving", CODE.NOT_FOUND, "Servable not found for request: Latest(tf_x)", CODE.NOT_FOUND),
        # A rewrite is per backend: the same words from another server keep their code.
        ("tfserving", CODE.INTERNAL, "Model not found", CODE.INTERNAL),
    ],
)
def test_status_normalisation(
    backend: str, code: grpc.StatusCode, message: str, expected: grpc.StatusCode
) -> None:
    assert normalise_status(backend, code, message) == expected


def test_rpc_error_becomes_one_exception_with_code_and_server_message() -> None:
    error = from_rpc_error("torchserve", "pt_x", FakeRpcError(CODE.INTERNAL, "Model not found: pt_x"))
    assert isinstance(error, InferenceError)
    assert error.code == CODE.NOT_FOUND
    assert error.server_message == "Model not found: pt_x"
    assert (error.backend, error.model) == ("torchserve", "pt_x")
    assert str(error) == "torchserve model 'pt_x': NOT_FOUND: Model not found: pt_x"


def test_a_renewed_key_is_picked_up_once_and_the_call_retried() -> None:
    """TorchServe renews its keys (keyguard.py): a call rejected for its old key is sent again with the
    key the credentials now give; a rejection with an unchanged key is the caller's error, sent once."""
    keys = iter(["old", "new", "new"])
    client = client_class("triton")("127.0.0.1:1", {}, credentials=lambda: next(keys))
    sent: list[tuple] = []

    def method(request: object, timeout: float, metadata: tuple) -> str:
        sent.append(metadata)
        if ("authorization", "Bearer new") not in metadata:
            raise FakeRpcError(CODE.PERMISSION_DENIED, "Token Authorization failed")
        return "answer"

    try:
        assert client._call(method, "request", "pt_x") == "answer"
        assert sent == [(("authorization", "Bearer old"),), (("authorization", "Bearer new"),)]
        sent.clear()

        def denied(request: object, timeout: float, metadata: tuple) -> str:
            sent.append(metadata)
            raise FakeRpcError(CODE.PERMISSION_DENIED, "Token Authorization failed")

        with pytest.raises(InferenceError) as raised:
            client._call(denied, "request", "pt_x")
        assert raised.value.code == CODE.PERMISSION_DENIED and len(sent) == 1
    finally:
        client.close()


def test_an_unreadable_key_keeps_the_old_one_and_the_call_error_stands() -> None:
    """TorchServe rewrites key_file.json in place: credentials that fail for a moment must not turn a
    refused call into a crash of the client."""
    answers = iter(["old"])

    def credentials() -> str:
        try:
            return next(answers)
        except StopIteration:
            raise OSError("key_file.json is being rewritten") from None

    client = client_class("triton")("127.0.0.1:1", {}, credentials=credentials)

    def denied(request: object, timeout: float, metadata: tuple) -> str:
        raise FakeRpcError(CODE.PERMISSION_DENIED, "Token Authorization failed")

    try:
        with pytest.raises(InferenceError) as raised:
            client._call(denied, "request", "pt_x")
        assert raised.value.code == CODE.PERMISSION_DENIED
        assert ("authorization", "Bearer old") in client._call_metadata
    finally:
        client.close()


def test_batch_problems_name_the_offending_value() -> None:
    manifest = make_manifest("pytorch")
    good = np.zeros((2, 3, 32, 32), np.float32)
    assert batch_problem(manifest, good) is None
    assert "float64" in batch_problem(manifest, good.astype(np.float64))  # type: ignore[operator]
    assert "[2, 3, 16, 32]" in batch_problem(manifest, good[:, :, :16])  # type: ignore[operator]
    assert "NCHW" in batch_problem(manifest, good.transpose(0, 2, 3, 1))  # type: ignore[operator]
    assert wire_dtype(good).triton == "FP32" and wire_dtype(good).tensorflow == 1
    with pytest.raises(ValueError, match="complex64"):
        wire_dtype(good.astype(np.complex64))


def test_channel_options_are_deliberate() -> None:
    options = dict(ChannelSettings().options())
    assert options["grpc.max_send_message_length"] >= 64 * 2**20
    assert options["grpc.max_receive_message_length"] >= 64 * 2**20
    assert options["grpc.keepalive_time_ms"] > 0


@pytest.mark.skipif(
    not GENERATED, reason="gRPC stubs not generated (scripts/setup.sh core torchserve tfserving)"
)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_client_validates_before_sending_and_never_hangs(backend: str) -> None:
    manifest = make_manifest("pytorch" if backend != "tfserving" else "tensorflow")
    # Nothing listens on port 1: validation fails before any call; a real call fails fast with UNAVAILABLE.
    with make_client(
        backend, "127.0.0.1:1", {manifest.model: manifest}, settings=ChannelSettings(deadline_s=2)
    ) as client:
        shape = [2, *manifest.input.shape[1:]]
        with pytest.raises(InferenceError) as caught:
            client.infer(manifest.model, np.zeros(shape, np.float64))
        assert caught.value.code == CODE.INVALID_ARGUMENT and "not sent" in str(caught.value)
        with pytest.raises(InferenceError) as caught:
            client.infer(manifest.model, np.zeros(shape, np.float32))
        assert caught.value.code in (CODE.UNAVAILABLE, CODE.DEADLINE_EXCEEDED)
        assert client.ready() is False
    assert client_class(backend).backend == backend


def test_unknown_backend_is_named() -> None:
    with pytest.raises(ValueError, match="unknown backend 'tgi'"):
        client_class("tgi")


def test_torchserve_config_overrides_keys_and_keeps_comments() -> None:
    template = "# comment\ninference_address=http://0.0.0.0:8080\nload_models=all\n"
    text = render_torchserve_config(
        template, {"inference_address": "http://127.0.0.1:1234", "disable_token_authorization": "true"}
    )
    assert text.splitlines() == [
        "# comment",
        "inference_address=http://127.0.0.1:1234",
        "load_models=all",
        "disable_token_authorization=true",
    ]


def test_torchserve_container_config_uses_the_standard_ports() -> None:
    config = (project_root() / "services" / "serving" / "torchserve" / "config.properties").read_text()
    # Keys outlive a run; keyguard.py renews them at half their lifetime.
    assert "token_expiration_min=1440" in config
    for key, port in [("grpc_inference_port", 7070), ("grpc_management_port", 7071)]:
        assert f"{key}={port}" in config
    for port in (8080, 8081, 8082):
        assert f":{port}" in config


def test_triton_python_repository_mirrors_the_onnx_one(tmp_path: Path) -> None:
    sys.path.insert(0, str(project_root() / "services" / "serving" / "triton"))
    try:
        from triton_native.repository import python_spec, sync
    finally:
        sys.path.pop(0)
    repository = ModelRepository(tmp_path)
    manifest = make_manifest("pytorch")
    spec = TritonModelSpec(manifest.model, "image", [3, 32, 32], "logits", 10, max_batch_size=16)
    repository.triton_version_dir(manifest.model, 1).mkdir(parents=True)
    repository.triton_config(manifest.model).write_text(render_config(spec, "onnxruntime"))
    repository.triton_onnx(manifest.model, 1).write_bytes(b"onnx")
    # Version 2 is on disk but its manifest is not written yet: not served.
    repository.triton_version_dir(manifest.model, 2).mkdir()
    repository.triton_onnx(manifest.model, 2).write_bytes(b"onnx")
    repository.manifests_dir.mkdir()
    write_manifest(repository.manifest_path(manifest.model), manifest)

    first = sync(repository)
    target = repository.triton_python_model_dir(manifest.model)
    assert first.changed == [manifest.model]
    assert python_spec(repository.triton_config(manifest.model).read_text()) == spec
    config = (target / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "max_batch_size: 16" in config and 'name: "image"' in config
    assert (target / "1" / "model.onnx").resolve() == repository.triton_onnx(manifest.model, 1).resolve()
    assert (target / "1" / "model.py").is_file()
    assert not (target / "2").exists()
    assert sync(repository).changed == []  # idempotent: Triton's poll sees no change

    manifest.version = 2
    write_manifest(repository.manifest_path(manifest.model), manifest)
    assert sync(repository).changed == [manifest.model]
    assert (target / "2" / "model.onnx").is_symlink()
    assert json.loads(repository.manifest_path(manifest.model).read_text())["version"] == 2
