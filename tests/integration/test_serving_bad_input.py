"""200 malformed requests of mixed kinds per server: each gets a clear error (INVALID_ARGUMENT or
NOT_FOUND with the offending value), and afterwards the same server process answers correctly."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
import pytest
from serving_support import EvalSet, ServingStack

from imgbench.clients import InferenceClient, InferenceError

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MALFORMED_REQUESTS = 200
BAD_INPUT = {grpc.StatusCode.INVALID_ARGUMENT}
UNKNOWN = {grpc.StatusCode.NOT_FOUND}
TOO_LARGE = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}


@dataclass(frozen=True)
class Malformed:
    kind: str
    codes: set[grpc.StatusCode]
    send: Callable[[InferenceClient, str, np.ndarray], Any]
    needle: Callable[[str, np.ndarray], str]
    """A piece of the offending value the error message must contain."""


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


def _spatial_cut(images: np.ndarray) -> np.ndarray:
    # Cut the height: a wrong shape whatever the layout (H is axis 2 in NCHW, 1 in NHWC).
    return images[:, :, :-5] if images.shape[1] in (1, 3) else images[:, :-5]


MALFORMED = [
    Malformed("wrong shape", BAD_INPUT, lambda c, m, x: c.infer(m, _spatial_cut(x)), lambda m, x: "27"),
    Malformed("float64", BAD_INPUT, lambda c, m, x: c.infer(m, x.astype(np.float64)), lambda m, x: "64"),
    Malformed("int32", BAD_INPUT, lambda c, m, x: c.infer(m, x.astype(np.int32)), lambda m, x: "int"),
    Malformed("truncated payload", BAD_INPUT, _tamper(lambda b: b[: len(b) // 2 + 3]), lambda m, x: ""),
    Malformed("oversized payload", BAD_INPUT, _tamper(lambda b: b + b"\0" * 40), lambda m, x: ""),
    Malformed(
        "batch above maximum",
        TOO_LARGE,
        lambda c, m, x: c.infer(m, np.repeat(x[:1], 400, 0)),
        lambda m, x: "",
    ),
    Malformed("unknown model", UNKNOWN, _rename, lambda m, x: "pt_no_such_model"),
    Malformed("unknown version", UNKNOWN, lambda c, m, x: c.infer(m, x, version=99), lambda m, x: "99"),
]


@pytest.mark.parametrize(("server", "prefix"), [("torchserve", "pt"), ("triton", "pt"), ("tfserving", "tf")])
def test_malformed_requests_get_clear_errors_and_the_server_keeps_serving(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str, prefix: str
) -> None:
    model = serving.trained.models[prefix]
    images = eval_sets[prefix].batch[:4]
    pid = serving.pid(server)
    with serving.client(server) as good, serving.client(server, validate=False) as raw:
        before = good.infer(model, images)
        outcomes: Counter[str] = Counter()
        for index in range(MALFORMED_REQUESTS):
            case = MALFORMED[index % len(MALFORMED)]
            with pytest.raises(InferenceError) as caught:
                case.send(raw, model, images)
            error = caught.value
            assert error.code in case.codes, f"{server}, {case.kind}: {error}"
            assert error.server_message.strip(), f"{server}, {case.kind}: empty message"
            assert case.needle(model, images).lower() in error.server_message.lower(), (
                f"{server}, {case.kind}: {error}"
            )
            outcomes[f"{case.kind}: {error.code.name}"] += 1
        after = good.infer(model, images)
    print(f"{server}: {dict(outcomes)}")
    np.testing.assert_allclose(after, before, atol=1e-5)
    assert serving.pid(server) == pid, f"{server} was restarted"
