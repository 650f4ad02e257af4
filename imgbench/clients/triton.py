"""Triton's KServe-v2 gRPC protocol (GRPCInferenceService), raw tensor contents on the wire.

The messages and stubs are the ones tritonclient ships; its higher-level client is not used, so the
channel options, deadlines and error mapping are the same as for the other protocols."""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from imgbench.clients.base import InferenceClient
from imgbench.clients.tensors import BY_TRITON, wire_dtype
from imgbench.load_results import ConfigValue, ServerIdentity
from imgbench.manifest import Manifest
from imgbench.triton_config import INTER_OP_KEY, INTRA_OP_KEY


class TritonClient(InferenceClient):
    backend: ClassVar[str] = "triton"
    infer_path: ClassVar[str] = "/inference.GRPCInferenceService/ModelInfer"
    infer_response: ClassVar[type[Any]] = service_pb2.ModelInferResponse

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

    def server_config(self, model: str) -> dict[str, ConfigValue]:
        """What Triton says it loaded for ``model``: instance kind and count, ONNX Runtime's thread
        counts, and the GPU execution accelerator (``none`` unless the config names one)."""
        answer = self._call(self._stub.ModelConfig, service_pb2.ModelConfigRequest(name=model), model)
        config = answer.config
        parameters = {key: value.string_value for key, value in config.parameters.items()}
        kinds = sorted({model_config_pb2.ModelInstanceGroup.Kind.Name(g.kind) for g in config.instance_group})
        accelerators = [a.name for a in config.optimization.execution_accelerators.gpu_execution_accelerator]
        result: dict[str, ConfigValue] = {
            "instance_kind": ",".join(kinds) or "KIND_AUTO",
            "instance_count": sum(g.count for g in config.instance_group) or 1,
            "execution_accelerator": ",".join(accelerators) or "none",
            "config_source": "Triton model config",
        }
        for key, name in ((INTRA_OP_KEY, "ort_threads"), (INTER_OP_KEY, "ort_inter_op_threads")):
            if parameters.get(key):
                result[name] = int(parameters[key])
        return result

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
