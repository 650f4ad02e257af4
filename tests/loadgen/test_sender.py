"""The loadgen's sender: requests serialised once, answers checked on their raw bytes where a
byte-identical answer was already found right, parsed and checked otherwise (a wrong answer is never
taken for a known right one)."""

from __future__ import annotations

import numpy as np
from loadgen.backends import InferenceSender


class ScriptedClient:
    """Answers each send with the next scripted logits (as raw bytes); counts what it parsed."""

    def __init__(self, answers: list[np.ndarray]) -> None:
        self.answers = [a.astype(np.float32).tobytes() for a in answers]
        self.sent: list[bytes] = []
        self.parsed = 0

    def serialized_request(self, model: str, batch: np.ndarray) -> bytes:
        return b"req:" + batch.tobytes()

    def send_serialized(self, model: str, request: bytes) -> bytes:
        self.sent.append(request)
        return self.answers.pop(0)

    def answer_of(self, model: str, response: bytes) -> np.ndarray:
        self.parsed += 1
        return np.frombuffer(response, dtype=np.float32).reshape(1, 3)

    def close(self) -> None:
        pass


def test_known_right_answers_are_checked_on_bytes_and_wrong_ones_still_caught() -> None:
    right, near, wrong = np.array([[0.1, 0.9, 0.0]]), np.array([[0.1, 0.8, 0.0]]), np.array([[0.9, 0.1, 0.0]])
    client = ScriptedClient([right, right, near, wrong, near])
    sender = InferenceSender(client, "m", [(np.zeros((1, 2), np.float32), np.array([1]))])
    assert sender.requests == [b"req:" + np.zeros((1, 2), np.float32).tobytes()]
    outcomes = [sender.send(i).correct for i in range(5)]
    assert outcomes == [True, True, True, False, True]
    # Parsed: the first answer, the different-but-right one (now the known one), the wrong one; the
    # repeats are byte checks.
    assert client.parsed == 3
    assert client.sent == [sender.requests[0]] * 5  # the same bytes every time, built once
