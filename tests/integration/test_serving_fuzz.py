"""Property tests (hypothesis) of the live servers' decode paths: the TF Serving stand-in's
``tensor_to_array`` through any TensorProto (dtype enum, shape, tensor_content length and bytes), and
TorchServe's handler through any input bytes. Every request is answered with logits of the right shape
or refused with INVALID_ARGUMENT (RESOURCE_EXHAUSTED for too many rows) and a message; never INTERNAL,
UNKNOWN or a dead server: the same process answers afterwards."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serving_support import EvalSet, ServingStack

from imgbench.clients import InferenceError

pytestmark = pytest.mark.integration

EXAMPLES = 150
HEALTH = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
CLIENT_FAULTS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
# tensorflow.DataType values: every wire dtype, unknown ones and the reference types (100+).
TF_DTYPES = st.one_of(st.integers(0, 30), st.integers(100, 130), st.just(1))


def _checked(call, classes: int) -> str:
    """Send; "answered" or the code name, failing on a server fault or an empty message."""
    try:
        logits = call()
    except InferenceError as error:
        assert error.code in CLIENT_FAULTS, error
        assert error.server_message.strip(), error
        return error.code.name
    assert logits.ndim == 2 and logits.shape[1] == classes, logits.shape
    return "answered"


@pytest.fixture(scope="module")
def fuzz_pids(serving: ServingStack) -> dict[str, int]:
    return {server: serving.pid(server) for server in ("tfserving", "torchserve")}


def test_the_stand_in_decodes_any_tensor_proto_or_refuses_it(
    serving: ServingStack, eval_sets: dict[str, EvalSet], fuzz_pids: dict[str, int]
) -> None:
    model = serving.trained.models["tf"]
    images = eval_sets["tf"].batch[:2]
    seen: set[str] = set()
    with serving.client("tfserving", validate=False) as raw:
        classes = len(raw.manifest(model).class_names)
        template = raw.request(model, images)

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH, database=None)
        @given(
            dtype=TF_DTYPES,
            shape=st.lists(st.integers(-2, 40), min_size=0, max_size=6),
            content=st.one_of(st.binary(max_size=64), st.integers(0, 40_000).map(lambda n: b"\0" * n)),
            keep_content=st.booleans(),
        )
        def property_(dtype: int, shape: list[int], content: bytes, keep_content: bool) -> None:
            request = type(template)()
            request.CopyFrom(template)
            (tensor,) = request.inputs.values()
            tensor.dtype = dtype
            del tensor.tensor_shape.dim[:]
            tensor.tensor_shape.dim.extend(tensor.tensor_shape.Dim(size=d) for d in shape)
            if not keep_content:
                tensor.tensor_content = content
            seen.add(_checked(lambda: raw.send(model, request), classes))

        property_()
        assert raw.infer(model, images).shape == (2, classes)
    assert serving.pid("tfserving") == fuzz_pids["tfserving"]
    assert "INVALID_ARGUMENT" in seen, seen


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_torchserve_decodes_any_body_or_refuses_it(
    serving: ServingStack, eval_sets: dict[str, EvalSet], fuzz_pids: dict[str, int]
) -> None:
    model = serving.trained.models["pt"]
    images = eval_sets["pt"].batch[:2]
    seen: set[str] = set()
    with serving.client("torchserve", validate=False) as raw:
        classes = len(raw.manifest(model).class_names)
        template = raw.request(model, images)
        whole = raw.payload(template)

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=HEALTH, database=None)
        @given(
            body=st.one_of(
                st.binary(max_size=256),
                st.binary(max_size=64).map(lambda b: b"\x93NUMPY" + b),
                st.integers(0, len(whole)).map(lambda n: whole[:n]),
                st.tuples(
                    st.sampled_from(["<f4", ">f4", "<f8", "<f2", "<i4", "|u1", "|b1"]),
                    st.lists(st.integers(0, 5), min_size=0, max_size=5),
                ).map(lambda spec: _npy(np.zeros(spec[1], dtype=spec[0]))),
            )
        )
        def property_(body: bytes) -> None:
            seen.add(_checked(lambda: raw.send(model, raw.with_payload(template, body)), classes))

        property_()
        assert raw.infer(model, images).shape == (2, classes)
    assert serving.pid("torchserve") == fuzz_pids["torchserve"]
    assert "INVALID_ARGUMENT" in seen, seen
