"""imgbench's locustfile with users that burn CPU before every send: a deliberately CPU-starved load
generator (``IMGBENCH_TEST_SPIN_S`` seconds of busy loop per request, holding the event loop)."""

from __future__ import annotations

import os
import time

from loadgen import users
from loadgen.locustfile import *  # noqa: F403 (the users, the shape and the event hooks)

SPIN_S = float(os.environ.get("IMGBENCH_TEST_SPIN_S", "0.004"))
_send = users.InferenceUser.send


def slow_send(self: users.InferenceUser, scheduled: float | None) -> None:
    end = time.perf_counter() + SPIN_S
    while time.perf_counter() < end:
        pass
    _send(self, scheduled)


users.InferenceUser.send = slow_send  # type: ignore[method-assign]
