"""The load generator's path against the real servers: requests serialised once and sent as bytes on a
generic unary call (``serialized_request``/``send_serialized``/``answer_of``) are the message path's
bytes and get the message path's answers, for all three servers (issue 13)."""

from __future__ import annotations

import numpy as np
import pytest
from serving_support import CASE_IDS, CASES, EvalSet, ServingStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize(("server", "prefix"), CASES, ids=CASE_IDS)
def test_serialized_requests_get_the_message_paths_answers(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str, prefix: str
) -> None:
    model = serving.trained.models[prefix]
    images = eval_sets[prefix].batch[:8]
    with serving.client(server) as client:
        for start in range(0, len(images), 4):
            batch = images[start : start + 4]
            message = client.request(model, batch)
            wire = client.serialized_request(model, batch)
            assert wire == message.SerializeToString(), f"{server}: serialised request differs"
            by_message = client.send(model, message)
            by_bytes = client.answer_of(model, client.send_serialized(model, wire))
            assert by_bytes.shape == by_message.shape and by_bytes.dtype == by_message.dtype
            # Same request, same runtime: the same logits (batching may reassociate floats slightly).
            np.testing.assert_allclose(by_bytes, by_message, atol=1e-4)
            assert np.array_equal(by_bytes.argmax(1), by_message.argmax(1)), server
