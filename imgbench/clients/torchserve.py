"""TorchServe's gRPC inference API (InferenceAPIsService.Predictions): the tensor travels as .npy
bytes (``np.save``) under the input key ``data``; the handler answers .npy logits [N, classes].

Token authorization (on by default in TorchServe 0.12) is a bearer key in the ``authorization``
metadata; ``torchserve_keys(run_dir)`` reads the keys a native server wrote into its run directory."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, ClassVar

import grpc
import numpy as np
from google.protobuf import empty_pb2

from imgbench.clients.base import InferenceClient
from imgbench.clients.errors import InferenceError
from imgbench.clients.stubs import stub_module
from imgbench.errors import ImgbenchError
from imgbench.manifest import Manifest

INPUT_KEY = "data"
KEY_FILE = "key_file.json"
NPY_MAGIC = b"\x93NUMPY"
# The handler's answer to one bad request among good ones in a batch is {"code": 400|413, "error": ...}
# with that request's status set; TorchServe 0.12's gRPC frontend drops per-request statuses and
# answers OK, so the client turns the body back into the error it is.
HANDLER_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
}

inference_pb2 = stub_module("torchserve.inference_pb2")
inference_grpc = stub_module("torchserve.inference_pb2_grpc")


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def torchserve_keys(workdir: Path) -> dict[str, str]:
    """{'inference': key, 'management': key, 'API': key} from TorchServe's ``key_file.json`` in its
    working directory (native: ``<run_dir>/torchserve``), or {} when token authorization is off."""
    path = Path(workdir) / KEY_FILE
    if not path.exists():
        return {}
    return {kind: entry["key"] for kind, entry in json.loads(path.read_text(encoding="utf-8")).items()}


def bearer(key: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),) if key else ()


class TorchServeClient(InferenceClient):
    backend: ClassVar[str] = "torchserve"
    infer_path: ClassVar[str] = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions"
    infer_response: ClassVar[type[Any]] = inference_pb2.PredictionResponse

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = inference_grpc.InferenceAPIsServiceStub(channel)
        self._infer_method = self._stub.Predictions

    def _infer_request(self, manifest: Manifest, model: str, batch: np.ndarray, version: int | None) -> Any:
        # TorchServe versions are the archive's strings; trainer-pt archives integers ("1", "2").
        return inference_pb2.PredictionsRequest(
            model_name=model,
            model_version=str(version) if version is not None else "",
            input={INPUT_KEY: npy_bytes(batch)},
        )

    def _answer(self, model: str, response: Any) -> np.ndarray:
        try:
            return super()._answer(model, response)
        except _HandlerError as answer:
            raise InferenceError(self.backend, model, answer.code, answer.message) from None

    def _logits(self, response: Any) -> np.ndarray:
        body = bytes(response.prediction)
        if not body.startswith(NPY_MAGIC):
            raise _HandlerError.from_body(body)
        try:
            return np.load(io.BytesIO(body), allow_pickle=False)
        except ValueError as exc:
            raise _HandlerError(grpc.StatusCode.INTERNAL, f"answer is an unreadable .npy: {exc}") from None

    def payload(self, request: Any) -> bytes:
        return bytes(request.input[INPUT_KEY])

    def with_payload(self, request: Any, payload: bytes) -> Any:
        copy = type(request)()
        copy.CopyFrom(request)
        copy.input[INPUT_KEY] = payload
        return copy

    def ready(self, model: str | None = None) -> bool:
        answer = self._probe(self._stub.Ping, empty_pb2.Empty())
        if answer is None or json.loads(answer.health or "{}").get("status") != "Healthy":
            return False
        if model is None:
            return True
        # The inference API has no per-model status: a one-image call answers the question.
        try:
            manifest = self.manifest(model)
            shape = [1 if d is None else d for d in manifest.input.shape]
            self.infer(model, np.zeros(shape, dtype=manifest.input.dtype))
        except ImgbenchError:  # InferenceError, or no manifest for that name
            return False
        return True

    def metadata(self, model: str) -> dict[str, Any]:
        # TorchServe's model description is on the management API; the tensor facts are the manifest's.
        manifest = self.manifest(model)
        return {
            "backend": self.backend,
            "model": model,
            "server": "torchserve",
            "versions": [manifest.version],
            "inputs": [{"name": INPUT_KEY, "dtype": manifest.input.dtype, "shape": manifest.input.shape}],
            "outputs": [
                {"name": manifest.logits_name, "dtype": "float32", "shape": [None, manifest.num_classes]}
            ],
        }


class _HandlerError(Exception):
    """An answer that is not logits: the handler's error body for one request of a batch."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message

    @classmethod
    def from_body(cls, body: bytes) -> _HandlerError:
        try:
            answer = json.loads(body)
            status, message = int(answer["code"]), str(answer["error"])
        except (ValueError, KeyError, TypeError):
            return cls(grpc.StatusCode.INTERNAL, f"answer is neither .npy logits nor an error: {body[:80]!r}")
        return cls(HANDLER_STATUS.get(status, grpc.StatusCode.INTERNAL), message)
