"""A run as a list of load points (steps), each with its own warm-up: the one timeline that the Locust
shape, the open-loop schedulers, the recorder and the results all read, so they never disagree.

    >>> plan = LoadPlan.closed([1, 4], step_s=10, warmup_s=2)
    >>> plan.point_at(11.0).label, plan.measured(11.0), plan.measured(13.0)
    ('users=4', False, True)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from imgbench.errors import ImgbenchError

Mode = Literal["closed", "open"]


@dataclass(frozen=True)
class Step:
    index: int
    start_s: float
    """Offset from the start of the run."""
    duration_s: float
    users: int
    """Closed loop: concurrent users. Open loop: schedulers sharing the rate."""
    rate: float | None
    """Open loop: requests per second, all processes together; None in closed loop."""

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    @property
    def label(self) -> str:
        return f"rate={self.rate:g}" if self.rate is not None else f"users={self.users}"


@dataclass(frozen=True)
class LoadPlan:
    mode: Mode
    steps: tuple[Step, ...]
    warmup_s: float
    """Excluded from the results at the start of every step (ramp-up, connection set-up, caches)."""
    drain_s: float = 0.0
    """After the last step no new requests; those in flight get this long to finish, so the end of
    the run does not cut them off (what is still in flight then is counted as UNFINISHED)."""

    @classmethod
    def closed(cls, users: list[int], step_s: float, warmup_s: float, drain_s: float = 2.0) -> LoadPlan:
        cls._check(users, step_s, warmup_s, "users")
        steps = tuple(Step(i, i * step_s, step_s, n, None) for i, n in enumerate(users))
        return cls("closed", steps, warmup_s, drain_s)

    @classmethod
    def open(
        cls, rates: list[float], step_s: float, warmup_s: float, schedulers: int = 1, drain_s: float = 5.0
    ) -> LoadPlan:
        cls._check(rates, step_s, warmup_s, "rate")
        if schedulers < 1:
            raise ImgbenchError(f"open loop needs at least one scheduler per process, got {schedulers}")
        steps = tuple(Step(i, i * step_s, step_s, schedulers, float(r)) for i, r in enumerate(rates))
        return cls("open", steps, warmup_s, drain_s)

    @staticmethod
    def _check(values: list[int] | list[float], step_s: float, warmup_s: float, what: str) -> None:
        if not values or any(v <= 0 for v in values):
            raise ImgbenchError(f"{what} steps must be positive numbers, got {values}")
        if step_s <= 0:
            raise ImgbenchError(f"step duration must be positive seconds, got {step_s}")
        if not 0 <= warmup_s < step_s:
            raise ImgbenchError(
                f"warm-up ({warmup_s} s) must be at least 0 and shorter than a step ({step_s} s), "
                "or nothing would be measured"
            )

    @property
    def load_s(self) -> float:
        """When the last step ends (no new requests after this)."""
        return self.steps[-1].end_s

    @property
    def total_s(self) -> float:
        return self.load_s + self.drain_s

    def point_at(self, elapsed_s: float) -> Step:
        """The step a request sent (or scheduled) ``elapsed_s`` after the start belongs to."""
        for step in self.steps:
            if elapsed_s < step.end_s:
                return step
        return self.steps[-1]

    def measured(self, elapsed_s: float) -> bool:
        """Whether a request sent (scheduled) at ``elapsed_s`` counts in the results (not warm-up)."""
        if not 0 <= elapsed_s < self.load_s:
            return False
        step = self.point_at(elapsed_s)
        return elapsed_s >= step.start_s + self.warmup_s

    def measured_window(self, step: Step) -> tuple[float, float]:
        return step.start_s + self.warmup_s, step.end_s

    def describe(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "warmup_s": self.warmup_s,
            "drain_s": self.drain_s,
            "steps": [
                {
                    "label": s.label,
                    "start_s": s.start_s,
                    "duration_s": s.duration_s,
                    "users": s.users,
                    "rate": s.rate,
                }
                for s in self.steps
            ],
        }
