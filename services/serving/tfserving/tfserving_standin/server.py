"""The gRPC services: PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus). Bad input gets INVALID_ARGUMENT or NOT_FOUND with the offending value, in TF
Serving's wording where it has one; the server keeps serving."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import wrappers_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfserving_standin import NAME
from tfserving_standin.batching import Batcher
from tfserving_standin.metrics import Metrics
from tfserving_standin.models import SIGNATURE, ModelManager, Servable

STATE_NAMES = {10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}
PREDICT_DEADLINE_S = 30.0


class RequestError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _servable(models: ModelManager, spec: Any) -> Servable:
    version = spec.version.value if spec.HasField("version") else None
    if spec.version_label:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"version_label {spec.version_label!r}: the {NAME} has no labels",
        )
    servable = models.servable(spec.name, version)
    if servable is None:
        which = f"Specific({spec.name}, {version})" if version is not None else f"Latest({spec.name})"
        raise RequestError(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {which}")
    if spec.signature_name not in ("", SIGNATURE):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f'Serving signature key "{spec.signature_name}" not found.'
        )
    return servable


def tensor_to_array(name: str, tensor: Any, expected: Any) -> np.ndarray:
    """The request tensor as numpy, checked against the signature's input spec."""
    try:
        dtype = np.dtype(tf.dtypes.as_dtype(tensor.dtype).as_numpy_dtype)
    except (TypeError, KeyError, ValueError):  # KeyError: an enum without a numpy type (DT_RESOURCE)
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': unknown dtype enum {tensor.dtype}"
        ) from None
    if dtype != expected.dtype:
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{name}' expects dtype {expected.dtype.name} but {dtype.name} is provided",
        )
    shape = [d.size for d in tensor.tensor_shape.dim]
    if len(shape) != len(expected.shape) or any(
        want is not None and got != want for got, want in zip(shape, expected.shape, strict=True)
    ):
        wanted = [-1 if d is None else d for d in expected.shape]
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"input '{name}' has shape {shape}, the signature takes {wanted}",
        )
    if any(d < 1 for d in shape):
        raise RequestError(
            grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}' has an empty dimension: {shape}"
        )
    expected_bytes = int(np.prod(shape)) * dtype.itemsize
    if tensor.tensor_content:
        if len(tensor.tensor_content) != expected_bytes:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"input '{name}': tensor_content has {len(tensor.tensor_content)} bytes, shape {shape} of "
                f"{dtype.name} needs {expected_bytes}",
            )
        return np.frombuffer(tensor.tensor_content, dtype=dtype).reshape(shape)
    try:
        return tf.make_ndarray(tensor)
    except Exception as exc:
        raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, f"input '{name}': {exc}") from None


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, models: ModelManager, metrics: Metrics, max_batch_size: int | None) -> None:
        self.models = models
        self.metrics = metrics
        self.max_batch_size = max_batch_size

    def _handle(self, api: str, request: Any, context: grpc.ServicerContext, work: Callable[[], Any]) -> Any:
        started = time.perf_counter()
        try:
            answer = work()
        except RequestError as error:
            self.metrics.observe_request(
                request.model_spec.name, api, error.code.name, time.perf_counter() - started
            )
            context.abort(error.code, error.args[0])
        self.metrics.observe_request(request.model_spec.name, api, "OK", time.perf_counter() - started)
        return answer

    def Predict(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("predict", request, context, lambda: self._predict(request))

    def _predict(self, request: Any) -> Any:
        servable = _servable(self.models, request.model_spec)
        (input_name, expected) = next(iter(servable.inputs.items()))
        unknown = sorted(set(request.inputs) - {input_name})
        if unknown or input_name not in request.inputs:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"inputs {sorted(request.inputs)} do not match the signature's input '{input_name}'",
            )
        batch = tensor_to_array(input_name, request.inputs[input_name], expected)
        wanted = list(request.output_filter) or sorted(servable.outputs)
        if missing := [name for name in wanted if name not in servable.outputs]:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output_filter names {missing}, the signature has {sorted(servable.outputs)}",
            )
        if self.max_batch_size is not None and len(batch) > self.max_batch_size:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Task size {len(batch)} is larger than maximum input batch size {self.max_batch_size}",
            )
        outputs = self._run(servable.batcher, servable, batch)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = SIGNATURE
        for name in wanted:
            response.outputs[name].CopyFrom(tf.make_tensor_proto(np.ascontiguousarray(outputs[name])))
        return response

    @staticmethod
    def _run(batcher: Batcher | None, servable: Servable, batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            if batcher is None:
                return servable.run(batch)
            return batcher.submit(batch).result(timeout=PREDICT_DEADLINE_S)
        except OverflowError as exc:
            raise RequestError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)) from None
        except tf.errors.InvalidArgumentError as exc:
            raise RequestError(grpc.StatusCode.INVALID_ARGUMENT, exc.message) from None

    def GetModelMetadata(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handle("metadata", request, context, lambda: self._metadata(request))

    def _metadata(self, request: Any) -> Any:
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise RequestError(
                grpc.StatusCode.INVALID_ARGUMENT, f"metadata_field must be ['signature_def'], got {fields}"
            )
        servable = _servable(self.models, request.model_spec)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        signature = signatures.signature_def[SIGNATURE]
        signature.method_name = "tensorflow/serving/predict"
        for target, specs in ((signature.inputs, servable.inputs), (signature.outputs, servable.outputs)):
            for name, spec in specs.items():
                info = target[name]
                info.name = name
                info.dtype = tf.dtypes.as_dtype(spec.dtype).as_datatype_enum
                for size in spec.shape:
                    info.tensor_shape.dim.add(size=-1 if size is None else size)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = servable.name
        response.model_spec.version.value = servable.version
        response.metadata["signature_def"].Pack(signatures)
        # What is answering: the real server has no such entry.
        response.metadata["server"].Pack(
            wrappers_pb2.StringValue(value=f"{NAME} (TensorFlow {tf.__version__})")
        )
        return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, models: ModelManager) -> None:
        self.models = models

    def GetModelStatus(self, request: Any, context: grpc.ServicerContext) -> Any:
        spec = request.model_spec
        state = self.models.model(spec.name)
        if state is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {spec.name}")
        versions = state.states
        if spec.HasField("version"):
            if spec.version.value not in versions:
                context.abort(
                    grpc.StatusCode.NOT_FOUND,
                    f"Could not find version {spec.version.value} of model {spec.name}",
                )
            versions = {spec.version.value: versions[spec.version.value]}
        response = get_model_status_pb2.GetModelStatusResponse()
        for version, value in sorted(versions.items()):
            entry = response.model_version_status.add(version=version, state=value)
            if error := state.errors.get(version):
                entry.status.error_code = 13  # INTERNAL, as error_codes.proto numbers it
                entry.status.error_message = error
        return response


def rest_status(models: ModelManager, name: str) -> dict | None:
    """TF Serving's REST GET /v1/models/<name> answer."""
    state = models.model(name)
    if state is None:
        return None
    return {
        "model_version_status": [
            {
                "version": str(version),
                "state": STATE_NAMES.get(value, "UNKNOWN"),
                "status": {
                    "error_code": "UNKNOWN" if version in state.errors else "OK",
                    "error_message": state.errors.get(version, ""),
                },
            }
            for version, value in sorted(state.states.items())
        ]
    }
