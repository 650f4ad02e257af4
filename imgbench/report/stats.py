"""The few statistics the report needs to say "how sure": spreads and overlaps, no more."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    mean: float
    stdev: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:,.2f} ± {self.stdev:,.2f} (n={self.n})"


def spread(values: list[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0, len(values))


def steady_state(values: list[float]) -> list[float]:
    """Drop the first epoch when there are others: it pays for compilation, caches and warm-up."""
    return values[1:] if len(values) > 1 else values


def binomial_stderr(p: float, n: int) -> float:
    """Standard error of an accuracy measured on ``n`` images."""
    return math.sqrt(max(p * (1 - p), 0.0) / n) if n > 0 else float("nan")


def clearly_different(a: Spread, b: Spread, sigmas: float = 2.0) -> bool:
    """True when the means differ by more than ``sigmas`` standard errors of their difference."""
    if a.n < 2 or b.n < 2:
        return False
    stderr = math.sqrt(a.stdev**2 / a.n + b.stdev**2 / b.n)
    return abs(a.mean - b.mean) > sigmas * stderr
