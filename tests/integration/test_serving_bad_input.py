"""Malformed requests at volume against every real server and model: 1,000 per case (TorchServe; Triton
with the PyTorch and with the TensorFlow export; the TF Serving stand-in), sent 8 at a time, of every
kind below. Each gets the right gRPC status and a message that names what was wrong (the text is
checked, not only the code), or an answer where the server answers such requests by design (NaN/inf
values, a tensor without values in TF Serving); afterwards the same server
process answers the same logits as before, and its memory (the process and its workers) grew by less
than MEMORY_BOUND_MB over the second half of them (TorchServe's JVM: below its heap cap)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import psutil
import pytest
from serving_support import CASE_IDS, CASES, EvalSet, ServingStack

from imgbench.clients import InferenceClient, InferenceError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MALFORMED_REQUESTS = 1_000
CONCURRENCY = 8
# RSS growth of a server's processes (TorchServe's Python workers; Triton and its stubs; the stand-in)
# over the second 500 malformed requests, once the first 500 warmed the error paths: a leak of the
# 12-400 KB payloads would exceed it.
MEMORY_BOUND_MB = 64
# TorchServe's frontend: heap capped by -Xmx1g (config.properties), plus the JVM's own code and threads.
JVM_BOUND_MB = 1024 + 512
BAD_INPUT = {grpc.StatusCode.INVALID_ARGUMENT}
UNKNOWN = {grpc.StatusCode.NOT_FOUND}
TOO_LARGE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
# A request the server cannot parse: every gRPC implementation reports its own decoding failure.
UNPARSEABLE = {grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN}
# The inference method of each server, for requests that are not protobuf at all.
INFER_METHODS = {
    "torchserve": "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions",
    "triton": "/inference.GRPCInferenceService/ModelInfer",
    "tfserving": "/tensorflow.serving.PredictionService/Predict",
}
GARBAGE = b"\x0f\xff\xff\xff\xffnot a protobuf"  # field 1 with wire type 7: no parser accepts it


@dataclass(frozen=True)
class Malformed:
    kind: str
    codes: set[grpc.StatusCode]
    send: Callable[[InferenceClient, str, np.ndarray], Any]
    needles: Callable[[str, np.ndarray], tuple[str, ...]]
    """Any one of these (spaces ignored, case-insensitive) must be in the server's message."""
    answered_by: frozenset[str] = frozenset()
    """Servers that answer this request by design (the stand-in, as TF Serving, reads a tensor without
    values as zeros; TorchServe and the stand-in serve NaN/inf values)."""
    unexplained_by: frozenset[str] = frozenset()
    """Servers whose gRPC framework gives no message for this (TorchServe's grpc-java: UNKNOWN, empty)."""


def _tamper(change: Callable[[bytes], bytes]) -> Callable[[InferenceClient, str, np.ndarray], Any]:
    def send(client: InferenceClient, model: str, images: np.ndarray) -> Any:
        request = client.request(model, images)
        return client.send(model, client.with_payload(request, change(client.payload(request))))

    return send


def _rename(client: InferenceClient, model: str, images: np.ndarray) -> Any:
    request = client.request(model, images)
    spec = request.model_spec if hasattr(request, "model_spec") else request
    field = "name" if hasattr(request, "model_spec") else "model_name"
    setattr(spec, field, "pt_no_such_model")
    return client.send("pt_no_such_model", request)


def _garbage(client: InferenceClient, model: str, images: np.ndarray) -> Any:
    call = client.channel.unary_unary(INFER_METHODS[client.backend])
    try:
        return call(GARBAGE, timeout=10, metadata=client._call_metadata)
    except grpc.RpcError as error:
        raise InferenceError(client.backend, model, error.code(), error.details() or "") from None


def _spatial_cut(images: np.ndarray) -> np.ndarray:
    # Cut the height: a wrong shape whatever the layout (H is axis 2 in NCHW, 1 in NHWC).
    return images[:, :, :-5] if images.shape[1] in (1, 3) else images[:, :-5]


def _poisoned(images: np.ndarray) -> np.ndarray:
    poisoned = images.copy()
    poisoned.flat[::7] = np.nan
    poisoned.flat[1::7] = np.inf
    return poisoned


def _shape(array: np.ndarray) -> str:
    return ",".join(str(d) for d in array.shape)


MALFORMED = [
    Malformed(
        "wrong shape", BAD_INPUT, lambda c, m, x: c.infer(m, _spatial_cut(x)), lambda m, x: ("27", "shape")
    ),
    Malformed(
        "wrong rank", BAD_INPUT, lambda c, m, x: c.infer(m, x[:, None]), lambda m, x: (_shape(x[:, None]),)
    ),
    Malformed("float64", BAD_INPUT, lambda c, m, x: c.infer(m, x.astype(np.float64)), lambda m, x: ("64",)),
    Malformed("float16", BAD_INPUT, lambda c, m, x: c.infer(m, x.astype(np.float16)), lambda m, x: ("16",)),
    Malformed("int32", BAD_INPUT, lambda c, m, x: c.infer(m, x.astype(np.int32)), lambda m, x: ("int",)),
    Malformed("empty batch", BAD_INPUT, lambda c, m, x: c.infer(m, x[:0]), lambda m, x: ("0",)),
    Malformed(
        "truncated payload",
        BAD_INPUT,
        _tamper(lambda b: b[: len(b) // 2 + 3]),
        lambda m, x: ("byte", "size", "unreadable", "shape"),
    ),
    Malformed(
        "oversized payload",
        BAD_INPUT,
        _tamper(lambda b: b + b"\0" * 40),
        lambda m, x: ("byte", "size", "after", "shape"),
    ),
    Malformed(
        "empty payload",
        BAD_INPUT,
        _tamper(lambda b: b""),
        lambda m, x: ("byte", "size", "npy", "shape", "empty"),
        answered_by=frozenset({"tfserving"}),
    ),
    Malformed(
        "NaN and inf values",
        BAD_INPUT,
        lambda c, m, x: c.infer(m, _poisoned(x)),
        lambda m, x: ("nan",),
        answered_by=frozenset({"torchserve", "tfserving"}),
    ),
    Malformed(
        "batch above maximum",
        TOO_LARGE,
        lambda c, m, x: c.infer(m, np.repeat(x[:1], 400, 0)),
        lambda m, x: ("400", "batch-size must be <="),
    ),
    Malformed("unknown model", UNKNOWN, _rename, lambda m, x: ("pt_no_such_model",)),
    Malformed("unknown version", UNKNOWN, lambda c, m, x: c.infer(m, x, version=99), lambda m, x: ("99",)),
    Malformed(
        "garbage protobuf",
        UNPARSEABLE,
        _garbage,
        lambda m, x: ("pars", "deserializ", "protobuf", "invalid"),
        unexplained_by=frozenset({"torchserve"}),
    ),
]


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


def _family_rss_mb(pid: int) -> dict[str, float]:
    """RSS of the server's processes, summed by kind: the JVM (TorchServe's frontend) apart."""
    leader = psutil.Process(pid)
    totals = {"jvm": 0.0, "other": 0.0}
    for member in (leader, *leader.children(recursive=True)):
        kind = "jvm" if member.name() == "java" else "other"
        totals[kind] += member.memory_info().rss / 2**20
    return totals


def _one(raw: InferenceClient, model: str, images: np.ndarray, index: int) -> tuple[str, str | None]:
    """Send the ``index``-th malformed request: ("kind: outcome", None), or (kind, what was wrong)."""
    case = MALFORMED[index % len(MALFORMED)]
    server = raw.backend
    try:
        logits = case.send(raw, model, images)
    except InferenceError as error:
        message = _squash(error.server_message)
        if server in case.answered_by:
            return case.kind, f"{case.kind}: {server} answers this, got {error}"
        if error.code not in case.codes:
            return (
                case.kind,
                f"{case.kind}: {error.code.name} not in {sorted(c.name for c in case.codes)}: {error}",
            )
        explained = message and any(_squash(n) in message for n in case.needles(model, images))
        if not explained and not (server in case.unexplained_by and not message):
            return case.kind, f"{case.kind}: message names none of {case.needles(model, images)}: {error}"
        return f"{case.kind}: {error.code.name}", None
    except Exception as error:  # the answer could not be read: reported with the others
        return case.kind, f"{case.kind}: {type(error).__name__}: {error}"
    if server not in case.answered_by:
        return case.kind, f"{case.kind}: was answered"
    if logits.shape != (images.shape[0], len(raw.manifest(model).class_names)):
        return case.kind, f"{case.kind}: answer has shape {list(logits.shape)}"
    return f"{case.kind}: answered", None


@pytest.mark.parametrize(("server", "prefix"), CASES, ids=CASE_IDS)
def test_malformed_requests_get_clear_errors_and_the_server_keeps_serving(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str, prefix: str
) -> None:
    model = serving.trained.models[prefix]
    images = eval_sets[prefix].batch[:4]
    pid = serving.pid(server)
    with serving.client(server) as good, serving.client(server, validate=False) as raw:
        before = good.infer(model, images)
        # Two halves: the first warms the error paths (the JVM's heap and TensorFlow's and Triton's
        # allocators grow to their working size), the second must not grow the process family further.
        half = MALFORMED_REQUESTS // 2
        rss = [_family_rss_mb(pid)]
        outcomes = []
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            for start in (0, half):
                indices = range(start, start + half)
                outcomes += list(pool.map(lambda i: _one(raw, model, images, i), indices))
                rss.append(_family_rss_mb(pid))
        after = good.infer(model, images)
    failures = [problem for _, problem in outcomes if problem]
    counts = Counter(label for label, problem in outcomes if not problem)
    samples = [{kind: round(mb) for kind, mb in sample.items() if mb} for sample in rss]
    print(f"{server}-{prefix}: {len(outcomes)} malformed, RSS MB {samples}, {dict(counts)}")
    assert not failures, f"{len(failures)} of {MALFORMED_REQUESTS} wrong, e.g.:\n" + "\n".join(
        dict.fromkeys(failures)
    )
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert serving.pid(server) == pid, f"{server} was restarted"
    grown = rss[2]["other"] - rss[1]["other"]
    assert grown < MEMORY_BOUND_MB, f"{server} grew {grown:.0f} MB over the second half: {samples}"
    # The JVM's heap grows toward its -Xmx1g by design (and exits at it): bounded by that cap instead.
    assert rss[2]["jvm"] < JVM_BOUND_MB, f"{server}'s JVM holds {rss[2]['jvm']:.0f} MB: {samples}"
