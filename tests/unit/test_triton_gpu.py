"""Triton configs per device (issue 14): KIND_CPU for the CPU server, KIND_GPU with ONNX Runtime's
TensorRT execution accelerator for the GPU server, thread settings in every variant; all parsed with
Triton's own ModelConfig schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from imgbench.errors import ImgbenchError
from imgbench.parallelism import DEFAULT_THREADS, THREAD_KNOBS, server_threads, tfserving_thread_flags
from imgbench.paths import ModelRepository
from imgbench.servers import SERVERS
from imgbench.triton_config import (
    INTER_OP_KEY,
    INTRA_OP_KEY,
    TRT_CACHE_DIR,
    TensorRTAccelerator,
    TritonModelSpec,
    render_config,
    tensorrt_record,
    write_triton_configs,
)

SPEC = TritonModelSpec("pt_resnet50", "image", [3, 224, 224], "logits", 1000, intra_op_threads=2)


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_cpu_variant_is_kind_cpu_without_accelerator() -> None:
    config = parse(render_config(SPEC, "onnxruntime", "cpu"))
    assert config.platform == "onnxruntime_onnx"
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator
    assert config.parameters[INTRA_OP_KEY].string_value == "2"
    assert config.parameters[INTER_OP_KEY].string_value == str(DEFAULT_THREADS.inter_op)


def test_gpu_variant_is_kind_gpu_with_tensorrt_fp16_and_an_engine_cache() -> None:
    config = parse(render_config(SPEC, "onnxruntime", "gpu", TensorRTAccelerator()))
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_GPU]
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_engine_cache_enable"] == "1"
    assert accelerator.parameters["trt_engine_cache_path"] == f"{TRT_CACHE_DIR}/pt_resnet50"
    # One profile over every batch dynamic batching can form: no engine rebuild under load.
    assert accelerator.parameters["trt_profile_min_shapes"] == "image:1x3x224x224"
    assert accelerator.parameters["trt_profile_opt_shapes"] == "image:16x3x224x224"
    assert accelerator.parameters["trt_profile_max_shapes"] == "image:32x3x224x224"
    assert config.parameters[INTRA_OP_KEY].string_value == "2"
    # The same tensors and batching as the CPU variant: clients cannot tell them apart.
    cpu = parse(render_config(SPEC, "onnxruntime", "cpu"))
    assert config.input == cpu.input and config.output == cpu.output
    assert config.dynamic_batching == cpu.dynamic_batching


def test_python_variant_keeps_the_thread_settings() -> None:
    config = parse(render_config(SPEC, "python"))
    assert config.backend == "python"
    assert config.parameters[INTRA_OP_KEY].string_value == "2"


@pytest.mark.parametrize(
    ("backend", "device"), [("onnxruntime", "cpu"), ("python", "gpu"), ("tensorrt", "gpu")]
)
def test_tensorrt_accelerator_only_for_onnxruntime_on_the_gpu(backend: str, device: str) -> None:
    with pytest.raises(ImgbenchError, match=f"backend={backend!r} device={device!r}"):
        render_config(SPEC, backend, device, TensorRTAccelerator())  # type: ignore[arg-type]


def test_unknown_device_is_named() -> None:
    with pytest.raises(ImgbenchError, match="'tpu'"):
        render_config(SPEC, "onnxruntime", "tpu")  # type: ignore[arg-type]


def test_trainers_write_both_variants_and_the_manifest_says_no_plan(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    paths = write_triton_configs(repo, SPEC)
    assert paths == {
        "cpu": "triton/pt_resnet50/config.pbtxt",
        "gpu": "triton/pt_resnet50/configs/gpu.pbtxt",
    }
    assert "KIND_GPU" in (tmp_path / paths["gpu"]).read_text()
    assert "KIND_CPU" in (tmp_path / paths["cpu"]).read_text()
    record = tensorrt_record(repo, "pt_resnet50", 1)
    assert record.status == "skipped" and record.details["plan"] is False
    assert record.details["execution_accelerator"] == "onnxruntime-tensorrt"
    assert record.details["gpu_config"] == paths["gpu"]


def test_thread_defaults_are_equal_across_servers() -> None:
    for server in SERVERS:
        settings = server_threads(server)
        assert settings, f"{server} declares no thread settings"
        for knob, value in settings.items():
            assert value == getattr(DEFAULT_THREADS, THREAD_KNOBS[knob]), (server, knob)
    assert tfserving_thread_flags() == [
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=1",
    ]
