"""Triton's KServe-v2 gRPC protocol (GRPCInferenceService), raw tensor contents on the wire.

The messages and stubs are the ones tritonclient ships; its higher-level client is not used, so the
channel options, deadlines and error mapping are the same as for the other protocols."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from imgbench.clients.base import InferenceClient
from imgbench.clients.tensors import BY_TRITON, wire_dtype
from imgbench.load_results import ServerIdentity
from imgbench.manifest import Manifest


class TritonClient(InferenceClient):
    backend: ClassVar[str] = "triton"

    def _bind(self, channel: grpc.Channel) -> None:
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        self._infer_method = self._stub.ModelInfer

    def _infer_request(self, manifest: Manifest, model: str, batch: np.ndarray, version: int | None) -> Any:
        request = service_pb2.ModelInferRequest(model_name=model, model_version=str(version or ""))
        request.inputs.add(
            name=manifest.input.name, datatype=wire_dtype(batch).triton, shape=list(batch.shape)
        )
        request.outputs.add(name=manifest.logits_name)
        request.raw_input_contents.append(batch.tobytes())
        return request

    def _logits(self, response: Any) -> np.ndarray:
        output = response.outputs[0]
        dtype = BY_TRITON[output.datatype].numpy
        return np.frombuffer(response.raw_output_contents[0], dtype=dtype).reshape(list(output.shape))

    def payload(self, request: Any) -> bytes:
        return bytes(request.raw_input_contents[0])

    def with_payload(self, request: Any, payload: bytes) -> Any:
        copy = type(request)()
        copy.CopyFrom(request)
        copy.raw_input_contents[0] = payload
        return copy

    def ready(self, model: str | None = None) -> bool:
        server = self._probe(self._stub.ServerReady, service_pb2.ServerReadyRequest())
        if server is None or not server.ready:
            return False
        if model is None:
            return True
        answer = self._probe(self._stub.ModelReady, service_pb2.ModelReadyRequest(name=model))
        return bool(answer and answer.ready)

    def metadata(self, model: str) -> dict[str, Any]:
        answer = self._call(self._stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=model), model)

        def tensors(items: Any) -> list[dict[str, Any]]:
            return [{"name": t.name, "dtype": t.datatype, "shape": list(t.shape)} for t in items]

        return {
            "backend": self.backend,
            "model": answer.name,
            "server": f"triton ({answer.platform})",
            "versions": [int(v) for v in answer.versions],
            "inputs": tensors(answer.inputs),
            "outputs": tensors(answer.outputs),
        }

    def identify(self, model: str) -> ServerIdentity:
        """ServerMetadata's name and version; the model's platform or backend as the runtime."""
        server = self._call(self._stub.ServerMetadata, service_pb2.ServerMetadataRequest(), model)
        answer = self._call(self._stub.ModelMetadata, service_pb2.ModelMetadataRequest(name=model), model)
        name = server.name or "triton"
        return ServerIdentity(
            backend=self.backend,
            implementation="Triton" if name.lower() == "triton" else name,
            version=server.version or None,
            stand_in=False,
            runtime=f"{answer.platform} backend" if answer.platform else None,
        )

    def statistics(self, model: str) -> dict[str, int]:
        """Requests and executions the server counted for ``model`` (batching evidence)."""
        answer = self._call(self._stub.ModelStatistics, service_pb2.ModelStatisticsRequest(name=model), model)
        totals = {"inference_count": 0, "execution_count": 0}
        for stats in answer.model_stats:
            totals["inference_count"] += stats.inference_count
            totals["execution_count"] += stats.execution_count
        return totals

    def inference_statistics(self, model: str) -> dict[str, float]:
        """Cumulative successful requests and their queue/compute nanoseconds (the statistics API),
        summed over ``model``'s versions: two snapshots give the time per request in between."""
        answer = self._call(self._stub.ModelStatistics, service_pb2.ModelStatisticsRequest(name=model), model)
        totals = {
            "count": 0.0,
            **{f"{name}_ns": 0.0 for name in ("queue", "compute_input", "compute_infer", "compute_output")},
        }
        for stats in answer.model_stats:
            inference = stats.inference_stats
            totals["count"] += inference.success.count
            for name in ("queue", "compute_input", "compute_infer", "compute_output"):
                totals[f"{name}_ns"] += getattr(inference, name).ns
        return totals
