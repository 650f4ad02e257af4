"""Parallelism as data (issue 14): each load point records the settings its server ran with, Triton's
from its own model config (instance kind, ORT threads, execution accelerator), the others' from
imgbench's defaults (said so); the report shows them and names TensorRT only where Triton reported it."""

from __future__ import annotations

from pathlib import Path

from factories import load_document, load_point
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2, service_pb2

from imgbench.clients.triton import TritonClient
from imgbench.load_results import LoadResult
from imgbench.report.serving import server_settings
from imgbench.triton_config import TensorRTAccelerator, TritonModelSpec, render_config

SPEC = TritonModelSpec("pt_resnet18", "image", [3, 32, 32], "logits", 10)


def _client_answering(config_text: str) -> TritonClient:
    client = TritonClient("127.0.0.1:1", {})  # the channel connects lazily: no server needed
    answer = service_pb2.ModelConfigResponse(
        config=text_format.Parse(config_text, model_config_pb2.ModelConfig())
    )
    client._call = lambda method, request, model: answer  # type: ignore[method-assign]
    return client


def test_triton_reports_the_cpu_config_without_an_accelerator() -> None:
    config = _client_answering(render_config(SPEC, "onnxruntime", "cpu")).server_config("pt_resnet18")
    assert config == {
        "instance_kind": "KIND_CPU",
        "instance_count": 1,
        "execution_accelerator": "none",
        "ort_threads": 1,
        "ort_inter_op_threads": 1,
        "config_source": "Triton model config",
    }


def test_triton_reports_the_gpu_config_with_tensorrt() -> None:
    text = render_config(SPEC, "onnxruntime", "gpu", TensorRTAccelerator())
    config = _client_answering(text).server_config("pt_resnet18")
    assert config["instance_kind"] == "KIND_GPU" and config["execution_accelerator"] == "tensorrt"


def test_servers_that_cannot_report_get_imgbench_defaults_said_so() -> None:
    client = TritonClient("127.0.0.1:1", {})
    defaults = super(TritonClient, client).server_config("pt_resnet18")
    assert defaults["ort_threads"] == 1 and defaults["instance_count"] == 1
    assert "not reported" in str(defaults["config_source"])


def test_report_shows_the_settings_and_names_tensorrt_only_when_reported(tmp_path: Path) -> None:
    cpu = {"instance_kind": "KIND_CPU", "execution_accelerator": "none", "ort_threads": 1}
    gpu = {"instance_kind": "KIND_GPU", "execution_accelerator": "tensorrt", "ort_threads": 1}
    result = LoadResult.model_validate(
        load_document(
            [
                load_point("triton", 1, 8.0, server_config={**cpu, "config_source": "Triton model config"}),
                load_point("tfserving", 1, 9.0, server_config={"intra_op_threads": 1, "inter_op_threads": 1}),
            ]
        )
    )
    text = "\n".join(server_settings(result.points))
    assert "intra_op_threads=1" in text and "instance_kind=KIND_CPU" in text
    assert "tensorrt" not in text.lower()
    result.points[0].server_config = {**gpu, "config_source": "Triton model config"}
    assert "execution_accelerator=tensorrt" in "\n".join(server_settings(result.points))
