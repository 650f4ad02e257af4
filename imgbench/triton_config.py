"""Triton ``config.pbtxt`` for an exported ONNX model, from its manifest facts.

Three variants with the same tensor names, so clients cannot tell them apart:
- ``onnxruntime`` on the CPU: the official image's ONNX Runtime backend, ``KIND_CPU``
  (containers, ``triton/<model>/config.pbtxt``);
- ``onnxruntime`` on the GPU: ``KIND_GPU`` and ONNX Runtime's TensorRT execution provider as the GPU
  execution accelerator (FP16, engines cached on a volume), ``triton/<model>/configs/gpu.pbtxt``
  next to the CPU one. The GPU server starts with ``--model-config-name=gpu`` (:data:`GPU_CONFIG_NAME`)
  and so reads the same repository and the same ``model.onnx``; a CPU server never sees the GPU file;
- ``python``: the python backend running ONNX Runtime, which is all the natively installable
  Triton has (``triton-python/<model>/``, assembled by the Triton launcher from ``triton/<model>/``).

Every variant carries its thread settings as data: ONNX Runtime's intra-/inter-op thread counts in
``parameters`` (the onnxruntime backend's keys; the python model reads the same keys), defaults from
:data:`imgbench.parallelism.DEFAULT_THREADS`, equal across servers.

No TensorRT *plan* (``model.plan``, platform ``tensorrt_plan``) is built by anything in imgbench: the
GPU config runs ``model.onnx`` and ONNX Runtime builds TensorRT engines for it on the serving GPU at
first load (:func:`tensorrt_record` says exactly that in the manifest).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError
from imgbench.manifest import ExportRecord
from imgbench.parallelism import DEFAULT_THREADS
from imgbench.paths import ModelRepository, served_variant

_TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}

Backend = Literal["onnxruntime", "python", "tensorrt"]
Device = Literal["cpu", "gpu"]
DEVICES: tuple[Device, ...] = ("cpu", "gpu")
_KINDS: dict[str, str] = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}

GPU_CONFIG_NAME = "gpu"
"""``tritonserver --model-config-name=gpu`` loads ``<model>/configs/gpu.pbtxt`` instead of config.pbtxt."""
TRT_CACHE_DIR = "/trt-cache"
"""Where the GPU server's TensorRT engines are cached (a volume in compose and Kubernetes)."""
INTRA_OP_KEY = "intra_op_thread_count"
INTER_OP_KEY = "inter_op_thread_count"


@dataclass(frozen=True)
class TensorRTAccelerator:
    """ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime backend."""

    precision_mode: Literal["FP16", "FP32"] = "FP16"
    max_workspace_size_bytes: int = 1 << 30
    engine_cache_path: str = TRT_CACHE_DIR
    """Engines are built on first load (minutes for a ResNet-152) and reused from here afterwards."""

    def pbtxt(self, spec: TritonModelSpec) -> str:
        """The ``optimization`` block. One optimization profile covers batch 1 to ``max_batch_size``
        (optimized for the largest preferred batch), so dynamic batching never triggers a rebuild."""
        image = "x".join(str(d) for d in spec.input_dims)
        preferred = [b for b in spec.preferred_batch_sizes if b <= spec.max_batch_size]
        opt_batch = max(preferred, default=spec.max_batch_size)
        parameters = {
            "precision_mode": self.precision_mode,
            "max_workspace_size_bytes": str(self.max_workspace_size_bytes),
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": f"{self.engine_cache_path}/{spec.name}",
            "trt_profile_min_shapes": f"{spec.input_name}:1x{image}",
            "trt_profile_opt_shapes": f"{spec.input_name}:{opt_batch}x{image}",
            "trt_profile_max_shapes": f"{spec.input_name}:{spec.max_batch_size}x{image}",
        }
        lines = "\n".join(f'        parameters {{ key: "{k}" value: "{v}" }}' for k, v in parameters.items())
        return f"""optimization {{
  execution_accelerators {{
    gpu_execution_accelerator: [
      {{
        name: "tensorrt"
{lines}
      }}
    ]
  }}
}}
"""


@dataclass(frozen=True)
class TritonModelSpec:
    name: str
    input_name: str
    input_dims: list[int]
    """One image's dimensions, without the batch axis, e.g. [3, 64, 64] (NCHW) or [64, 64, 3] (NHWC)."""
    output_name: str
    num_classes: int
    input_dtype: str = "float32"
    max_batch_size: int = 32
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16)
    max_queue_delay_us: int = 2000
    instance_count: int = 1
    intra_op_threads: int = DEFAULT_THREADS.intra_op
    inter_op_threads: int = DEFAULT_THREADS.inter_op


def render_config(
    spec: TritonModelSpec,
    backend: Backend,
    device: Device = "cpu",
    accelerator: TensorRTAccelerator | None = None,
) -> str:
    """The config.pbtxt text for ``backend`` on ``device``; ``accelerator`` only for onnxruntime on a GPU.

    >>> print(render_config(TritonModelSpec("pt_x", "image", [3, 8, 8], "logits", 10), "onnxruntime"))
    ... # doctest: +ELLIPSIS
    name: "pt_x"
    platform: "onnxruntime_onnx"
    ...
    """
    if device not in _KINDS:
        raise ImgbenchError(f"unknown Triton device {device!r}; known: {', '.join(DEVICES)}")
    if backend == "onnxruntime":
        engine = 'platform: "onnxruntime_onnx"'
    elif backend == "tensorrt":
        engine = 'platform: "tensorrt_plan"'
    elif backend == "python":
        engine = 'backend: "python"'
    else:
        raise ImgbenchError(f"unknown Triton backend {backend!r}; known: onnxruntime, python, tensorrt")
    if accelerator is not None and (backend != "onnxruntime" or device != "gpu"):
        raise ImgbenchError(
            f"the TensorRT execution accelerator needs backend onnxruntime on the gpu, "
            f"got backend={backend!r} device={device!r}"
        )
    preferred = ", ".join(str(b) for b in spec.preferred_batch_sizes if b <= spec.max_batch_size)
    dims = ", ".join(str(d) for d in spec.input_dims)
    dtype = _TRITON_DTYPES[spec.input_dtype]
    # A plan has no ONNX Runtime session: thread settings belong to the ORT-running variants.
    threads = (
        ""
        if backend == "tensorrt"
        else f"""parameters {{
  key: "{INTRA_OP_KEY}"
  value: {{ string_value: "{spec.intra_op_threads}" }}
}}
parameters {{
  key: "{INTER_OP_KEY}"
  value: {{ string_value: "{spec.inter_op_threads}" }}
}}
"""
    )
    optimization = accelerator.pbtxt(spec) if accelerator is not None else ""
    return f"""name: "{spec.name}"
{engine}
max_batch_size: {spec.max_batch_size}
input [
  {{
    name: "{spec.input_name}"
    data_type: {dtype}
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{spec.output_name}"
    data_type: TYPE_FP32
    dims: [ {spec.num_classes} ]
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {preferred} ]
  max_queue_delay_microseconds: {spec.max_queue_delay_us}
}}
instance_group [
  {{
    count: {spec.instance_count}
    kind: {_KINDS[device]}
  }}
]
{threads}{optimization}"""


def gpu_config(repo: ModelRepository, model: str) -> Path:
    """The GPU variant's file, ``triton/<model>/configs/gpu.pbtxt``."""
    return repo.triton_model_dir(model) / "configs" / f"{GPU_CONFIG_NAME}.pbtxt"


def write_triton_configs(repo: ModelRepository, spec: TritonModelSpec) -> dict[str, str]:
    """Write the CPU ``config.pbtxt`` and the GPU ``configs/gpu.pbtxt`` of ``spec.name``; returns
    {variant: path relative to the repository} for the manifest."""
    cpu, gpu = repo.triton_config(spec.name), gpu_config(repo, spec.name)
    for path in (cpu, gpu):
        path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cpu, render_config(spec, "onnxruntime", "cpu"))
    atomic_write_text(gpu, render_config(spec, "onnxruntime", "gpu", TensorRTAccelerator()))
    return {device: path.relative_to(repo.root).as_posix() for device, path in (("cpu", cpu), ("gpu", gpu))}


def tensorrt_record(repo: ModelRepository, model: str, version: int) -> ExportRecord:
    """The manifest's ``tensorrt`` record, exactly what exists: no ``model.plan`` is built; the GPU
    config runs ``model.onnx`` through ONNX Runtime's TensorRT execution provider (FP16), whose
    engines the serving GPU builds at first load and caches under :data:`TRT_CACHE_DIR`."""
    accelerator = TensorRTAccelerator()
    return ExportRecord(
        format="tensorrt",
        path=repo.triton_plan(model, version).relative_to(repo.root).as_posix(),
        status="skipped",
        reason="no TensorRT plan is built; Triton's GPU config runs model.onnx through ONNX Runtime's "
        "TensorRT execution provider, built on the serving GPU at first load",
        details={
            "plan": False,
            "execution_accelerator": "onnxruntime-tensorrt",
            "precision_mode": accelerator.precision_mode,
            "gpu_config": gpu_config(repo, model).relative_to(repo.root).as_posix(),
            "engine_cache": f"{accelerator.engine_cache_path}/{model}",
            "model_config_name": GPU_CONFIG_NAME,
        },
    )


def write_served_variant(
    repo: ModelRepository, spec: TritonModelSpec, variant: str, onnx_path: Path, version: int
) -> dict[str, str]:
    """Publish ``onnx_path`` (already validated and gated) as Triton model ``<spec.name>_<variant>``
    (``imgbench.paths.SERVED_VARIANTS``): ``triton/<name>_<variant>/<version>/model.onnx`` (a hard link
    where the filesystem allows, else a copy) and its CPU and GPU configs, same tensor names and
    batching as the base model. The GPU config has no TensorRT accelerator: its FP16 engines are for
    float graphs, so a quantized (QDQ) graph runs on ONNX Runtime's CUDA provider there. Returns the
    paths for the manifest, relative to the repository."""
    name = served_variant(spec.name, variant)
    variant_spec = replace(spec, name=name)
    target = repo.triton_onnx(name, version)
    if target.parent.exists():
        raise ImgbenchError(f"{target.parent} already exists: {name} version {version} was served before")
    target.parent.mkdir(parents=True)
    try:
        os.link(onnx_path, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(onnx_path, target)
    cpu, gpu = repo.triton_config(name), gpu_config(repo, name)
    gpu.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(cpu, render_config(variant_spec, "onnxruntime", "cpu"))
    atomic_write_text(gpu, render_config(variant_spec, "onnxruntime", "gpu"))
    return {
        "triton_model": name,
        "triton_onnx": target.relative_to(repo.root).as_posix(),
        "triton_config": cpu.relative_to(repo.root).as_posix(),
        "triton_gpu_config": gpu.relative_to(repo.root).as_posix(),
    }
