"""Property tests of the clients' decode paths: the batch check (``batch_problem``) accepts exactly
the batches that fit the manifest's input and a refusal names what it found; the TorchServe client
turns the handler's error bodies back into the errors they are."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from factories import make_manifest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from imgbench.clients.tensors import WIRE_DTYPES, batch_problem

MANIFESTS = {framework: make_manifest(framework) for framework in ("pytorch", "tensorflow")}
DTYPES = st.sampled_from([spec.numpy for spec in WIRE_DTYPES.values()] + [np.dtype("bool"), np.dtype("int8")])


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, np.ndarray]:
    framework = draw(st.sampled_from(sorted(MANIFESTS)))
    expected = MANIFESTS[framework].input.shape
    fits = draw(st.booleans())
    if fits:  # near misses are more telling than random shapes
        shape = [draw(st.integers(0, 3)), *expected[1:]]
        if draw(st.booleans()):
            axis = draw(st.integers(1, len(shape) - 1))
            shape[axis] = draw(st.integers(0, 40))
    else:
        shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=6))
    dtype = np.dtype("float32") if draw(st.booleans()) else draw(DTYPES)
    return framework, np.zeros(shape, dtype=dtype)


@settings(max_examples=400, deadline=None)
@given(batches())
def test_batch_problem_accepts_exactly_what_fits_and_names_what_it_found(
    case: tuple[str, np.ndarray],
) -> None:
    framework, batch = case
    manifest = MANIFESTS[framework]
    spec = manifest.input
    fits = (
        batch.dtype == np.dtype(spec.dtype)
        and batch.ndim == len(spec.shape)
        and all(w is None or g == w for g, w in zip(batch.shape[1:], spec.shape[1:], strict=True))
        and batch.shape[0] >= 1
    )
    problem = batch_problem(manifest, batch)
    assert (problem is None) == fits, (batch.dtype, batch.shape, problem)
    if problem is not None:
        assert manifest.model in problem
        if batch.dtype != np.dtype(spec.dtype):
            assert str(batch.dtype) in problem
        elif batch.ndim != len(spec.shape) or batch.shape[1:] != tuple(spec.shape[1:]):
            assert str(list(batch.shape)) in problem and spec.layout in problem
        else:
            assert "empty" in problem


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.float32, st.just((2, 3, 32, 32)), elements=st.floats(width=32)))
def test_values_never_matter_nan_and_inf_included(batch: np.ndarray) -> None:
    # The check is about the tensor's form; NaN/inf values are the model's business (servers answer).
    assert batch_problem(MANIFESTS["pytorch"], batch) is None


GENERATED = (
    Path(__file__).resolve().parents[2] / "imgbench" / "clients" / "_generated" / "__init__.py"
).exists()


@pytest.mark.skipif(
    not GENERATED, reason="gRPC stubs not generated (scripts/setup.sh core torchserve tfserving)"
)
@settings(max_examples=200, deadline=None)
@given(
    status=st.sampled_from([400, 404, 413, 500, 507]),
    message=st.text(min_size=1, max_size=60),
    garbage=st.binary(max_size=40),
)
def test_torchserve_batch_error_bodies_become_the_errors_they_are(
    status: int, message: str, garbage: bytes
) -> None:
    # TorchServe's gRPC frontend answers OK with the handler's error body for a bad request in a batch.
    import json
    from types import SimpleNamespace

    from imgbench.clients.errors import InferenceError
    from imgbench.clients.torchserve import HANDLER_STATUS, TorchServeClient

    manifest = make_manifest("pytorch")
    client = TorchServeClient("127.0.0.1:1", {manifest.model: manifest})
    body = json.dumps({"code": status, "error": message}).encode()
    client._call = lambda method, request, model, deadline_s=None: SimpleNamespace(prediction=body)
    with pytest.raises(InferenceError) as caught:
        client.send(manifest.model, None)
    assert caught.value.code == HANDLER_STATUS.get(status, grpc.StatusCode.INTERNAL)
    assert caught.value.server_message == message and caught.value.model == manifest.model
    client._call = lambda method, request, model, deadline_s=None: SimpleNamespace(prediction=garbage)
    with pytest.raises(InferenceError) as caught:
        client.send(manifest.model, None)
    assert caught.value.code in (grpc.StatusCode.INTERNAL, *HANDLER_STATUS.values())
    client.close()
