"""The soak's figures from what was measured: per window the load generator's point (n, p50/p99 from
its HdrHistogram), every error by gRPC code from its per-second timeline, and the server's memory and
the host's load average from the samples; then the p99 drift and the memory growth across windows.
Pure functions of their inputs (no processes, no clock), so tests feed them synthetic samples.

    >>> windows = [Window(0, 0.0, 60.0, 55.0, 2000, 1.0, 4.0, 36.0, 36.0),
    ...            Window(1, 60.0, 120.0, 55.0, 2000, 1.1, 5.0, 36.0, 36.0)]
    >>> p99_drift(windows).last_minus_first_ms
    1.0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import fmean

from imgbench.errors import ImgbenchError
from imgbench.load_results import LoadPoint

RELIABLE_P99_N = 1000
"""A p99 from fewer requests has under ten beyond it (docs/architecture.md, "Measurement rules")."""
ANSWERS = ("ok", "incorrect")
"""Timeline outcomes that are answers; every other key is an error's gRPC code."""


@dataclass(frozen=True)
class MemorySample:
    """The server's process tree at one moment: resident memory of each process, the host's load."""

    t_s: float
    """Seconds from the start of the load (negative: before it started)."""
    rss_bytes: Mapping[str, int]
    """``"<pid> <name>"`` -> resident set size. Shared pages count in every process that maps them."""
    load_avg_1m: float

    @property
    def total_bytes(self) -> int:
        return sum(self.rss_bytes.values())


@dataclass(frozen=True)
class Window:
    index: int
    start_s: float
    end_s: float
    measured_s: float
    """The window less the load generator's warm-up at its start (latencies are from this part)."""
    n: int
    p50_ms: float | None
    p99_ms: float | None
    throughput_rps: float | None
    target_rate: float | None
    requests: int = 0
    """Requests sent in the whole window (warm-up included), from the timeline."""
    errors: dict[str, int] = field(default_factory=dict)
    """Errors by gRPC code over the whole window (warm-up included), from the timeline."""
    incorrect: int = 0
    memory_samples: int = 0
    max_rss_bytes: int | None = None
    """Largest sum over the process tree in one sample."""
    max_rss_by_process: dict[str, int] = field(default_factory=dict)
    processes: int = 0
    """Most processes in the tree in one sample (a restarted worker shows as a new pid)."""
    load_avg_mean: float | None = None
    load_avg_max: float | None = None

    @property
    def p99_reliable(self) -> bool:
        return self.n >= RELIABLE_P99_N

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def window_bounds(plan: Mapping[str, object]) -> list[tuple[float, float]]:
    """(start, end) seconds of every step of a load result's ``plan`` (``LoadPlan.describe()``)."""
    steps = plan.get("steps")
    if not isinstance(steps, list) or not steps:
        raise ImgbenchError(f"the load result's plan has no steps: {plan!r}")
    return [(float(s["start_s"]), float(s["start_s"]) + float(s["duration_s"])) for s in steps]


def windows(
    points: Sequence[LoadPoint],
    bounds: Sequence[tuple[float, float]],
    timeline: Mapping[str, Mapping[str, int]],
    samples: Sequence[MemorySample],
) -> list[Window]:
    """One ``Window`` per load point (a step of the plan), in order. ``timeline``: second of the run
    (by send time) -> outcome counts; a sample at ``t_s`` belongs to the window with start ≤ t < end."""
    if len(points) != len(bounds):
        raise ImgbenchError(f"{len(points)} load points for {len(bounds)} windows: one point per window")
    out = []
    for index, (point, (start, end)) in enumerate(zip(points, bounds, strict=True)):
        requests, errors = 0, {}
        for second, counts in timeline.items():
            if start <= float(second) < end:
                requests += sum(counts.values())
                for code, count in counts.items():
                    if code not in ANSWERS:
                        errors[code] = errors.get(code, 0) + count
        inside = [s for s in samples if start <= s.t_s < end]
        by_process: dict[str, int] = {}
        for sample in inside:
            for name, rss in sample.rss_bytes.items():
                by_process[name] = max(by_process.get(name, 0), rss)
        loads = [s.load_avg_1m for s in inside]
        out.append(
            Window(
                index=index,
                start_s=start,
                end_s=end,
                measured_s=float(point.window_s or 0.0),
                n=point.n,
                p50_ms=point.p50_ms,
                p99_ms=point.p99_ms,
                throughput_rps=point.throughput_rps,
                target_rate=point.target_rate,
                requests=requests,
                errors=dict(sorted(errors.items())),
                incorrect=point.incorrect,
                memory_samples=len(inside),
                max_rss_bytes=max((s.total_bytes for s in inside), default=None),
                max_rss_by_process=dict(sorted(by_process.items())),
                processes=max((len(s.rss_bytes) for s in inside), default=0),
                load_avg_mean=round(fmean(loads), 2) if loads else None,
                load_avg_max=round(max(loads), 2) if loads else None,
            )
        )
    return out


@dataclass(frozen=True)
class Drift:
    """How the p99 moved over the run: last window against the first, and the largest change between
    neighbouring windows (signed: + slower). Windows without a p99 are left out; None with fewer than
    two."""

    windows: int
    first_p99_ms: float | None = None
    last_p99_ms: float | None = None
    last_minus_first_ms: float | None = None
    last_over_first: float | None = None
    max_step_change_ms: float | None = None
    max_step_between: tuple[int, int] | None = None
    """Indexes of the two windows the largest change lies between."""
    min_p99_ms: float | None = None
    max_p99_ms: float | None = None
    all_reliable: bool = False
    """Every window's p99 rests on ≥ 1,000 requests."""


def p99_drift(measured: Sequence[Window]) -> Drift:
    with_p99 = [w for w in measured if w.p99_ms is not None]
    if len(with_p99) < 2:
        return Drift(windows=len(with_p99))
    first, last = with_p99[0].p99_ms, with_p99[-1].p99_ms
    assert first is not None and last is not None  # filtered above; for the type checker
    steps = [
        (b.p99_ms - a.p99_ms, (a.index, b.index))  # type: ignore[operator]
        for a, b in pairwise(with_p99)
    ]
    change, between = max(steps, key=lambda step: abs(step[0]))
    p99s = [w.p99_ms for w in with_p99]
    return Drift(
        windows=len(with_p99),
        first_p99_ms=first,
        last_p99_ms=last,
        last_minus_first_ms=round(last - first, 3),
        last_over_first=round(last / first, 3) if first > 0 else None,
        max_step_change_ms=round(change, 3),
        max_step_between=between,
        min_p99_ms=min(p99s),  # type: ignore[type-var]
        max_p99_ms=max(p99s),  # type: ignore[type-var]
        all_reliable=all(w.p99_reliable for w in with_p99),
    )


@dataclass(frozen=True)
class MemoryGrowth:
    """The server tree's resident memory: the largest sample of the last window against the first's,
    per hour of run between their middles, and per process that lived through both windows."""

    before_load_bytes: int | None
    """The last sample before the load started (the idle server after its start-up)."""
    first_window_max_bytes: int | None
    last_window_max_bytes: int | None
    growth_bytes: int | None
    growth_fraction: float | None
    growth_bytes_per_hour: float | None
    by_process_bytes: dict[str, int] = field(default_factory=dict)
    """Growth of each process present in the first and the last window (same pid)."""
    appeared: list[str] = field(default_factory=list)
    """Processes of the last window not in the first (restarts, new workers)."""
    vanished: list[str] = field(default_factory=list)


def memory_growth(measured: Sequence[Window], samples: Sequence[MemorySample]) -> MemoryGrowth:
    before = [s for s in samples if s.t_s < 0]
    before_bytes = before[-1].total_bytes if before else None
    sampled = [w for w in measured if w.max_rss_bytes is not None]
    if not sampled:
        return MemoryGrowth(before_bytes, None, None, None, None, None)
    first, last = sampled[0], sampled[-1]
    assert first.max_rss_bytes is not None and last.max_rss_bytes is not None
    growth = last.max_rss_bytes - first.max_rss_bytes
    hours = ((last.start_s + last.end_s) - (first.start_s + first.end_s)) / 2 / 3600
    common = sorted(set(first.max_rss_by_process) & set(last.max_rss_by_process))
    return MemoryGrowth(
        before_load_bytes=before_bytes,
        first_window_max_bytes=first.max_rss_bytes,
        last_window_max_bytes=last.max_rss_bytes,
        growth_bytes=growth,
        growth_fraction=round(growth / first.max_rss_bytes, 4) if first.max_rss_bytes else None,
        growth_bytes_per_hour=round(growth / hours) if hours > 0 else None,
        by_process_bytes={
            name: last.max_rss_by_process[name] - first.max_rss_by_process[name] for name in common
        },
        appeared=sorted(set(last.max_rss_by_process) - set(first.max_rss_by_process)),
        vanished=sorted(set(first.max_rss_by_process) - set(last.max_rss_by_process)),
    )


def split_evenly(minutes: float, window_minutes: float) -> tuple[int, float]:
    """(windows, seconds each): ``minutes`` cut into windows of about ``window_minutes``, all of one
    length (the load generator's steps are), the count rounded to the nearest whole number (≥ 1).

    >>> split_evenly(30, 5), split_evenly(13, 5)
    ((6, 300.0), (3, 260.0))
    """
    if minutes <= 0 or window_minutes <= 0:
        raise ImgbenchError(
            f"--minutes and --window-minutes must be positive, got {minutes} and {window_minutes}"
        )
    count = max(1, round(minutes / window_minutes))
    return count, round(minutes * 60 / count, 3)
