"""Tensor facts the three protocols share: dtype names on each wire, and the batch check against a
manifest, so every client rejects the same mistakes with the same words."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from imgbench.manifest import Manifest


@dataclass(frozen=True)
class WireDtype:
    numpy: np.dtype
    triton: str
    tensorflow: int
    """tensorflow.DataType enum value (types.proto)."""


WIRE_DTYPES: dict[str, WireDtype] = {
    spec.numpy.name: spec
    for spec in (
        WireDtype(np.dtype("float32"), "FP32", 1),
        WireDtype(np.dtype("float64"), "FP64", 2),
        WireDtype(np.dtype("int32"), "INT32", 3),
        WireDtype(np.dtype("uint8"), "UINT8", 4),
        WireDtype(np.dtype("int64"), "INT64", 9),
        WireDtype(np.dtype("float16"), "FP16", 19),
    )
}
BY_TRITON = {spec.triton: spec for spec in WIRE_DTYPES.values()}
BY_TENSORFLOW = {spec.tensorflow: spec for spec in WIRE_DTYPES.values()}


def wire_dtype(array: np.ndarray) -> WireDtype:
    try:
        return WIRE_DTYPES[array.dtype.name]
    except KeyError:
        raise ValueError(
            f"dtype {array.dtype} cannot be sent; supported: {', '.join(sorted(WIRE_DTYPES))}"
        ) from None


def batch_problem(manifest: Manifest, batch: np.ndarray) -> str | None:
    """Why ``batch`` does not fit ``manifest``'s input, or None if it does."""
    spec = manifest.input
    if batch.dtype != np.dtype(spec.dtype):
        return f"batch dtype is {batch.dtype}, model {manifest.model!r} takes {spec.dtype}"
    expected = spec.shape
    if batch.ndim != len(expected) or any(
        want is not None and got != want for got, want in zip(batch.shape[1:], expected[1:], strict=True)
    ):
        return (
            f"batch shape is {list(batch.shape)}, model {manifest.model!r} takes "
            f"{['N' if d is None else d for d in expected]} ({spec.layout})"
        )
    if batch.shape[0] < 1:
        return f"batch of model {manifest.model!r} is empty"
    return None
