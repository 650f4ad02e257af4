"""TF Serving's gRPC API (PredictionService, ModelService): TensorProto with ``tensor_content``.

Natively the server is the TF Serving stand-in (services/serving/tfserving); in containers it is
the real tensorflow/serving. The client cannot tell them apart, except by ``metadata()['server']``."""

from __future__ import annotations

import re
from typing import Any, ClassVar

import grpc
import numpy as np
from google.protobuf import wrappers_pb2

from imgbench.clients.base import InferenceClient
from imgbench.clients.stubs import stub_module
from imgbench.clients.tensors import BY_TENSORFLOW, wire_dtype
from imgbench.load_results import ServerIdentity
from imgbench.manifest import Manifest

SIGNATURE = "serving_default"
STANDIN_METADATA_KEY = "server"
AVAILABLE = 30  # ModelVersionStatus.State.AVAILABLE

predict_pb2 = stub_module("tensorflow_serving.apis.predict_pb2")
metadata_pb2 = stub_module("tensorflow_serving.apis.get_model_metadata_pb2")
status_pb2 = stub_module("tensorflow_serving.apis.get_model_status_pb2")
prediction_grpc = stub_module("tensorflow_serving.apis.prediction_service_pb2_grpc")
model_service_grpc = stub_module("tensorflow_serving.apis.model_service_pb2_grpc")


def tensor_to_numpy(tensor: Any) -> np.ndarray:
    dtype = BY_TENSORFLOW[tensor.dtype].numpy
    shape = [d.size for d in tensor.tensor_shape.dim]
    if tensor.tensor_content:
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
    return np.asarray(tensor.float_val, dtype=dtype).reshape(shape)


def server_name(answer: Any) -> str:
    """The stand-in adds a ``server`` entry (a StringValue) to the metadata map; the real server doesn't."""
    if STANDIN_METADATA_KEY not in answer.metadata:
        return "TF Serving"
    value = wrappers_pb2.StringValue()
    answer.metadata[STANDIN_METADATA_KEY].Unpack(value)
    return value.value


def server_identity(answer: Any) -> ServerIdentity:
    """The stand-in names itself 'TF Serving stand-in (TensorFlow 2.21.0)'; the real server says nothing,
    so an answer without the entry is the real TF Serving (its version is not in the gRPC API)."""
    if STANDIN_METADATA_KEY not in answer.metadata:
        return ServerIdentity(backend="tfserving", implementation="TF Serving", stand_in=False)
    name = server_name(answer)
    match = re.fullmatch(r"(.+?) \((.+)\)", name)
    implementation, runtime = (match.group(1), match.group(2)) if match else (name, None)
    return ServerIdentity(backend="tfserving", implementation=implementation, stand_in=True, runtime=runtime)


class TFServingClient(InferenceClient):
    backend: ClassVar[str] = "tfserving"
    infer_path: ClassVar[str] = "/tensorflow.serving.PredictionService/Predict"
    infer_response: ClassVar[type[Any]] = predict_pb2.PredictResponse

    def _bind(self, channel: grpc.Channel) -> None:
        self._predict = prediction_grpc.PredictionServiceStub(channel)
        self._models = model_service_grpc.ModelServiceStub(channel)
        self._infer_method = self._predict.Predict
        self._output_name: dict[str, str] = {}

    def _infer_request(self, manifest: Manifest, model: str, batch: np.ndarray, version: int | None) -> Any:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = SIGNATURE
        if version is not None:
            request.model_spec.version.value = version
        tensor = request.inputs[manifest.input.name]
        tensor.dtype = wire_dtype(batch).tensorflow
        tensor.tensor_shape.dim.extend(tensor.tensor_shape.Dim(size=d) for d in batch.shape)
        tensor.tensor_content = batch.tobytes()
        request.output_filter.append(manifest.logits_name)
        return request

    def _logits(self, response: Any) -> np.ndarray:
        (tensor,) = response.outputs.values()
        return tensor_to_numpy(tensor)

    def payload(self, request: Any) -> bytes:
        (tensor,) = request.inputs.values()
        return bytes(tensor.tensor_content)

    def with_payload(self, request: Any, payload: bytes) -> Any:
        copy = type(request)()
        copy.CopyFrom(request)
        (tensor,) = copy.inputs.values()
        tensor.tensor_content = payload
        return copy

    def model_versions(self, model: str) -> dict[int, int]:
        """{version: state} as GetModelStatus reports them (30 = AVAILABLE)."""
        request = status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        answer = self._call(self._models.GetModelStatus, request, model)
        return {int(v.version): int(v.state) for v in answer.model_version_status}

    def ready(self, model: str | None = None) -> bool:
        if model is None:
            # TF Serving has no server-level health RPC: a channel that connects is "up".
            try:
                grpc.channel_ready_future(self.channel).result(timeout=min(self.settings.deadline_s, 5.0))
            except grpc.FutureTimeoutError:
                return False
            return True
        request = status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        answer = self._probe(self._models.GetModelStatus, request)
        return bool(answer and any(v.state == AVAILABLE for v in answer.model_version_status))

    def identify(self, model: str) -> ServerIdentity:
        request = metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        return server_identity(self._call(self._predict.GetModelMetadata, request, model))

    def metadata(self, model: str) -> dict[str, Any]:
        request = metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = model
        answer = self._call(self._predict.GetModelMetadata, request, model)
        signatures = metadata_pb2.SignatureDefMap()
        answer.metadata["signature_def"].Unpack(signatures)
        signature = signatures.signature_def[SIGNATURE]

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [
                {
                    "name": name,
                    "dtype": BY_TENSORFLOW[info.dtype].numpy.name
                    if info.dtype in BY_TENSORFLOW
                    else info.dtype,
                    "shape": [d.size for d in info.tensor_shape.dim],
                }
                for name, info in sorted(items.items())
            ]

        return {
            "backend": self.backend,
            "model": answer.model_spec.name,
            "server": server_name(answer),
            "versions": [int(answer.model_spec.version.value)],
            "inputs": tensors(signature.inputs),
            "outputs": tensors(signature.outputs),
        }
