"""Property tests of the TorchServe handler's decode path (``decode_request``): any bytes, any array in
a .npy body, give either the float32 NCHW batch that was sent or a ``RequestError`` (400, 413 for too
many rows) whose message names what was wrong; never another exception."""

from __future__ import annotations

import io
from types import ModuleType

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

C, H, W, MAX_ROWS = 3, 8, 8, 4
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _decode(handler_module: ModuleType, body: object):
    try:
        return handler_module.decode_request(body, C, H, W, MAX_ROWS), None
    except handler_module.RequestError as error:
        assert str(error).strip() and error.status in (400, 413), error
        return None, error


@settings(max_examples=300, deadline=None, suppress_health_check=HEALTH)
@given(body=st.one_of(st.binary(max_size=512), st.binary(max_size=64).map(lambda b: b"\x93NUMPY" + b)))
def test_any_bytes_decode_or_fail_with_a_request_error(handler_module: ModuleType, body: bytes) -> None:
    array, _ = _decode(handler_module, body)
    if array is not None:
        assert array.dtype == np.float32 and array.shape[1:] == (C, H, W) and 1 <= array.shape[0] <= MAX_ROWS


SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=9),
    st.tuples(st.integers(0, 6), st.just(C), st.just(H), st.just(W)),
    st.just((C, H, W)),
)
DTYPES = st.sampled_from(["float32", "float64", "float16", "int32", "uint8", "int64", "bool", ">f4"])


@settings(max_examples=300, deadline=None, suppress_health_check=HEALTH)
@given(
    array=hnp.arrays(DTYPES, SHAPES, elements=None), truncate=st.integers(0, 40), trailing=st.integers(0, 8)
)
def test_any_array_is_returned_as_sent_or_refused_naming_what_was_wrong(
    handler_module: ModuleType, array: np.ndarray, truncate: int, trailing: int
) -> None:
    body = _npy(array)
    # Cutting n bytes and appending n zeros keeps the length: a whole array with other values, not a
    # malformed body (np.load reads it too).
    assume(not (truncate and truncate == trailing))
    if truncate and truncate < len(body):
        body = body[:-truncate]
    body += b"\0" * trailing
    decoded, error = _decode(handler_module, body)
    whole = not (truncate and truncate < len(_npy(array))) and not trailing
    batch = array[None] if array.ndim == 3 else array
    fits = (
        whole
        and array.dtype == np.dtype("<f4")
        and batch.ndim == 4
        and batch.shape[1:] == (C, H, W)
        and 1 <= batch.shape[0] <= MAX_ROWS
    )
    if fits:
        assert error is None, error
        np.testing.assert_array_equal(decoded, batch)  # NaN/inf included: values are not judged
        return
    assert error is not None, (array.dtype, array.shape, truncate, trailing)
    message = str(error)
    if whole and array.dtype != np.dtype("<f4"):
        assert str(array.dtype) in message, message
    elif whole and not (batch.ndim == 4 and batch.shape[1:] == (C, H, W) and batch.shape[0] >= 1):
        assert str(list(batch.shape)) in message, message
    elif whole:
        assert error.status == 413 and str(MAX_ROWS) in message, message
    elif trailing and not truncate:
        assert "bytes after" in message, message
