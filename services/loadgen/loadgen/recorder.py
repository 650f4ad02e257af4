"""Lossless latency recording: one HdrHistogram per load point for the measured window (warm-up
excluded), Prometheus bucket counts per label set for the exporter (everything, counted exactly at
the bucket edges), plus outcome counters and a per-second timeline that shows when errors happened.

Workers send what they recorded since their last report (``drain``) to the master, which adds it
(``merge``): HdrHistograms add exactly, so merged percentiles are those of all requests together.

    >>> recorder = Recorder()
    >>> recorder.record(0, measured=True, elapsed_s=3.2, latency_s=0.004, outcome="ok", images=1)
    >>> recorder.points[0].histogram.get_value_at_percentile(50)
    4001
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from hdrh.histogram import HdrHistogram

from imgbench.observability import latency_buckets

Outcome = Literal["ok", "incorrect", "error"]

# Microseconds from 1 µs to 1 h at 3 significant digits: 0.1% resolution at any latency.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3
TIMELINE_BUCKET_S = 1.0


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def to_us(seconds: float) -> int:
    return min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US)


@dataclass
class Tally:
    """What happened to a set of requests: latencies of answered ones, counts of the rest."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    latency_sum_s: float = 0.0
    requests: int = 0
    incorrect: int = 0
    disagreements: int = 0
    """Answers whose top-1 differs from the reference model's at rest (``--reference-model``)."""
    images: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def add(
        self, latency_s: float | None, outcome: Outcome, images: int, code: str | None, disagree: bool = False
    ) -> None:
        self.requests += 1
        self.images += images
        if outcome == "error":
            self.errors[code or "UNKNOWN"] += 1
            return
        # An incorrect answer was still served: its latency is real and belongs in the distribution.
        if latency_s is not None:
            self.histogram.record_value(to_us(latency_s))
            self.latency_sum_s += latency_s
        if outcome == "incorrect":
            self.incorrect += 1
        if disagree:
            self.disagreements += 1

    def encode(self) -> dict[str, Any]:
        return {
            "histogram": self.histogram.encode().decode("ascii") if self.histogram.get_total_count() else "",
            "latency_sum_s": self.latency_sum_s,
            "requests": self.requests,
            "incorrect": self.incorrect,
            "disagreements": self.disagreements,
            "images": self.images,
            "errors": dict(self.errors),
        }

    def merge(self, encoded: dict[str, Any]) -> None:
        if encoded["histogram"]:
            self.histogram.decode_and_add(encoded["histogram"].encode("ascii"))
        self.latency_sum_s += encoded["latency_sum_s"]
        self.requests += encoded["requests"]
        self.incorrect += encoded["incorrect"]
        self.disagreements += encoded.get("disagreements", 0)
        self.images += encoded["images"]
        self.errors.update(encoded["errors"])

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass
class BucketTally:
    """What the exporter needs: counts per Prometheus bucket (``le`` edges, +Inf last), the sum,
    outcome counters. Cheaper per request than a second HdrHistogram, and exact at the edges."""

    edges: tuple[float, ...]
    buckets: list[int] = field(default_factory=list)
    latency_sum_s: float = 0.0
    requests: int = 0
    incorrect: int = 0
    images: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        if not self.buckets:
            self.buckets = [0] * (len(self.edges) + 1)

    def add(self, latency_s: float | None, outcome: Outcome, images: int, code: str | None) -> None:
        self.requests += 1
        self.images += images
        if outcome == "error":
            self.errors[code or "UNKNOWN"] += 1
            return
        if latency_s is not None:
            self.buckets[bisect.bisect_left(self.edges, latency_s)] += 1  # le: an edge value is within
            self.latency_sum_s += latency_s
        if outcome == "incorrect":
            self.incorrect += 1

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for count in self.buckets:
            total += count
            out.append(total)
        return out

    def encode(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "buckets": list(self.buckets),
            "latency_sum_s": self.latency_sum_s,
            "requests": self.requests,
            "incorrect": self.incorrect,
            "images": self.images,
            "errors": dict(self.errors),
        }

    def merge(self, encoded: dict[str, Any]) -> None:
        if tuple(encoded["edges"]) != self.edges:
            raise ValueError(
                f"bucket edges differ ({encoded['edges']} vs {self.edges}): give every process the same --slo"
            )
        self.buckets = [a + b for a, b in zip(self.buckets, encoded["buckets"], strict=True)]
        self.latency_sum_s += encoded["latency_sum_s"]
        self.requests += encoded["requests"]
        self.incorrect += encoded["incorrect"]
        self.images += encoded["images"]
        self.errors.update(encoded["errors"])


@dataclass
class Recorder:
    """Everything one process (or, on the master, all workers together) recorded in a run."""

    points: dict[int, Tally] = field(default_factory=dict)
    """Measured window of each load point, by the step's index in the plan (labels can differ between
    processes: a worker does not know the master's -u)."""
    exported: dict[tuple[str, str, str], BucketTally] = field(default_factory=dict)
    """All requests by (backend, model, batch_size): the Prometheus exporter reads these."""
    edges: tuple[float, ...] = field(default_factory=latency_buckets)
    """Prometheus bucket upper bounds (imgbench.observability.latency_buckets, an edge at the SLO)."""
    timeline: dict[int, Counter[str]] = field(default_factory=dict)
    """Second of the run -> outcome counts (``ok``, ``incorrect``, error codes)."""
    issued: int = 0
    """Requests the users issued (sent, or dropped at the in-flight bound), counted when they start:
    every one must end in the timeline as an answer or an error (results' ``faults.lost``)."""

    def record(
        self,
        point: int,
        *,
        measured: bool,
        elapsed_s: float,
        latency_s: float | None,
        outcome: Outcome,
        images: int,
        code: str | None = None,
        labels: tuple[str, str, str] = ("", "", ""),
        disagree: bool = False,
    ) -> None:
        # Hot path (every request): no setdefault, which would build a histogram per call.
        if measured:
            tally = self.points.get(point)
            if tally is None:
                tally = self.points[point] = Tally()
            tally.add(latency_s, outcome, images, code, disagree)
        exported = self.exported.get(labels)
        if exported is None:
            exported = self.exported[labels] = BucketTally(self.edges)
        exported.add(latency_s, outcome, images, code)
        second = int(max(elapsed_s, 0.0) // TIMELINE_BUCKET_S)
        counts = self.timeline.get(second)
        if counts is None:
            counts = self.timeline[second] = Counter()
        counts[code if outcome == "error" else outcome] += 1

    def encode(self) -> dict[str, Any]:
        return {
            "points": {str(index): tally.encode() for index, tally in self.points.items()},
            "exported": [[list(labels), tally.encode()] for labels, tally in self.exported.items()],
            "timeline": {str(second): dict(counts) for second, counts in self.timeline.items()},
            "issued": self.issued,
        }

    def drain(self) -> dict[str, Any]:
        """What was recorded since the last drain, encoded; the local state starts again empty."""
        encoded = self.encode()
        self.points, self.exported, self.timeline, self.issued = {}, {}, {}, 0
        return encoded

    def merge(self, encoded: dict[str, Any]) -> None:
        for index, tally in encoded["points"].items():
            self.points.setdefault(int(index), Tally()).merge(tally)
        for labels, tally in encoded["exported"]:
            key = (str(labels[0]), str(labels[1]), str(labels[2]))
            if key not in self.exported:
                self.exported[key] = BucketTally(self.edges)
            self.exported[key].merge(tally)
        for second, counts in encoded["timeline"].items():
            self.timeline.setdefault(int(second), Counter()).update(counts)
        self.issued += int(encoded.get("issued", 0))

    def reset_run(self) -> None:
        """A new test in the same process (web UI): results start again, exported totals go on."""
        self.points, self.timeline, self.issued = {}, {}, 0
