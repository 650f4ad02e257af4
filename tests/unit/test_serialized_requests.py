"""The load generator's path (``serialized_request`` + ``send_serialized`` + ``answer_of``) puts the
same bytes on the wire as ``send`` with the request message, and reads the same logits, for every
protocol: a capturing gRPC server records what each path sent and answers a canned response."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import numpy as np
import pytest
from factories import make_manifest
from tritonclient.grpc import service_pb2

from imgbench.clients import make_client
from imgbench.clients.tfserving import predict_pb2
from imgbench.clients.torchserve import inference_pb2, npy_bytes

LOGITS = np.arange(20, dtype=np.float32).reshape(2, 10) / 7.0


def canned_response(backend: str) -> bytes:
    """A valid inference answer of ``backend``'s protocol carrying ``LOGITS``."""
    if backend == "triton":
        response = service_pb2.ModelInferResponse(model_name="m")
        response.outputs.add(name="logits", datatype="FP32", shape=list(LOGITS.shape))
        response.raw_output_contents.append(LOGITS.tobytes())
    elif backend == "tfserving":
        response = predict_pb2.PredictResponse()
        tensor = response.outputs["logits"]
        tensor.dtype = 1  # DT_FLOAT
        tensor.tensor_shape.dim.extend(tensor.tensor_shape.Dim(size=d) for d in LOGITS.shape)
        tensor.tensor_content = LOGITS.tobytes()
    else:
        response = inference_pb2.PredictionResponse(prediction=npy_bytes(LOGITS))
    return response.SerializeToString()


class Capture(grpc.GenericRpcHandler):
    """Answers every unary call with fixed bytes; keeps (method, raw request bytes) of each call."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.calls: list[tuple[str, bytes]] = []

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        method = handler_call_details.method

        def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.calls.append((method, request))
            return self.answer

        return grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=None, response_serializer=None
        )


@pytest.fixture(params=["triton", "tfserving", "torchserve"])
def captured(request: pytest.FixtureRequest) -> Iterator[tuple[str, Capture, str]]:
    backend = request.param
    capture = Capture(canned_response(backend))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((capture,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield backend, capture, f"127.0.0.1:{port}"
    server.stop(0)


def test_serialized_path_sends_the_same_bytes_and_reads_the_same_logits(
    captured: tuple[str, Capture, str],
) -> None:
    backend, capture, target = captured
    framework = "tensorflow" if backend == "tfserving" else "pytorch"
    manifest = make_manifest(framework)
    model = manifest.model
    batch = np.random.default_rng(0).standard_normal((2, *manifest.input.shape[1:])).astype(np.float32)
    with make_client(backend, target, {model: manifest}) as client:
        old = client.send(model, client.request(model, batch))
        wire = client.serialized_request(model, batch)
        new = client.answer_of(model, client.send_serialized(model, wire))
    (old_method, old_bytes), (new_method, new_bytes) = capture.calls
    assert new_method == old_method == client.infer_path
    assert new_bytes == old_bytes == wire, f"{backend}: the serialised request differs from the message's"
    assert np.array_equal(old, new) and np.array_equal(new, LOGITS)
