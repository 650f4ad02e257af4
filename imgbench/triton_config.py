"""Triton ``config.pbtxt`` for an exported ONNX model, from its manifest facts.

Two variants with the same tensor names, so clients cannot tell them apart:
- ``onnxruntime``: the official image's ONNX Runtime backend (containers, ``triton/<model>/``);
- ``python``: the python backend running ONNX Runtime, which is all the natively installable
  Triton has (``triton-python/<model>/``, assembled by the Triton launcher from ``triton/<model>/``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

_TRITON_DTYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "uint8": "TYPE_UINT8"}


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


def render_config(spec: TritonModelSpec, backend: Literal["onnxruntime", "python", "tensorrt"]) -> str:
    """The config.pbtxt text for ``backend``.

    >>> print(render_config(TritonModelSpec("pt_x", "image", [3, 8, 8], "logits", 10), "onnxruntime"))
    ... # doctest: +ELLIPSIS
    name: "pt_x"
    platform: "onnxruntime_onnx"
    ...
    """
    if backend == "onnxruntime":
        engine = 'platform: "onnxruntime_onnx"'
    elif backend == "tensorrt":
        engine = 'platform: "tensorrt_plan"'
    else:
        engine = 'backend: "python"'
    preferred = ", ".join(str(b) for b in spec.preferred_batch_sizes if b <= spec.max_batch_size)
    dims = ", ".join(str(d) for d in spec.input_dims)
    dtype = _TRITON_DTYPES[spec.input_dtype]
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
    kind: KIND_CPU
  }}
]
"""
