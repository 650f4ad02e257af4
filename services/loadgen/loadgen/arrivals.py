"""Open-loop arrival processes: the gaps between scheduled send times.

Constant arrivals are wrk2's model, Poisson arrivals MLPerf LoadGen's Server scenario. The gaps only
decide when a request is *due*; its latency is measured from that due time, whatever the server does.
"""

from __future__ import annotations

import random
from typing import Literal, Protocol

ArrivalKind = Literal["constant", "poisson"]
ARRIVAL_KINDS: tuple[ArrivalKind, ...] = ("constant", "poisson")


class Arrivals(Protocol):
    def gap(self, rate: float) -> float:
        """Seconds until the next request at ``rate`` requests per second."""
        ...


class ConstantArrivals:
    def gap(self, rate: float) -> float:
        return 1.0 / rate


class PoissonArrivals:
    """Exponential gaps: a memoryless stream, bursts included, as independent clients would send."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def gap(self, rate: float) -> float:
        return self.rng.expovariate(rate)


def make_arrivals(kind: ArrivalKind, seed: int) -> Arrivals:
    if kind == "constant":
        return ConstantArrivals()
    if kind == "poisson":
        return PoissonArrivals(random.Random(seed))
    raise ValueError(f"unknown arrival process {kind!r}; expected one of {ARRIVAL_KINDS}")
