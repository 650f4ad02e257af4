"""The server's own view of a load point: what each server says its requests spent inside it, over the
point's measured window, next to what the client measured (the rest is network, protocol and client).

A ``Sampler`` takes a snapshot at the window's start and end (and, for gauges, while it runs); the
difference is a ``ServerTimings`` in ms per request. Where the figures come from is data in the server
registry (``ServerSpec.timings``):

    >>> before = {"count": 10.0, "queue_ns": 2e6}
    >>> after = {"count": 30.0, "queue_ns": 6e6}
    >>> triton_timings(before, after).queue_ms
    0.2
"""

from __future__ import annotations

import math
import re
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from imgbench.load_results import ServerTimings
from imgbench.servers import TimingsSource

Snapshot = dict[str, float]
_SAMPLE = re.compile(r"^([^\s{]+)(?:\{([^}]*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
TRITON_FIELDS = ("queue", "compute_input", "compute_infer", "compute_output")


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in Prometheus text format."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples.append((name, dict(_LABEL.findall(labels or "")), number))
    return samples


def _matches(labels: Mapping[str, str], source: TimingsSource, model: str) -> bool:
    if any(labels.get(key) != value for key, value in source.labels.items()):
        return False
    return not source.model_label or source.model_label not in labels or labels[source.model_label] == model


def prometheus_snapshot(text: str, source: TimingsSource, model: str) -> Snapshot:
    """The source's figures for ``model``: a histogram's sum and count, or each gauge's value."""
    wanted = {f"{source.metric}_sum": "sum", f"{source.metric}_count": "count"} if source.metric else {}
    wanted.update({gauge: key for key, gauge in source.gauges.items()})
    snapshot: Snapshot = {}
    for name, labels, value in parse_prometheus(text):
        key = wanted.get(name)
        if key is not None and _matches(labels, source, model) and math.isfinite(value):
            # Several series (per host, per level): histograms add up; gauges keep the largest.
            snapshot[key] = (
                snapshot.get(key, 0.0) + value if source.metric else max(snapshot.get(key, 0.0), value)
            )
    return snapshot


def triton_timings(before: Snapshot, after: Snapshot) -> ServerTimings | None:
    """Per-request ms from two statistics snapshots (cumulative ns and the success count)."""
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if count <= 0:
        return None
    per_request = {
        f"{name}_ms": round((after.get(f"{name}_ns", 0.0) - before.get(f"{name}_ns", 0.0)) / count / 1e6, 4)
        for name in TRITON_FIELDS
    }
    return ServerTimings(
        source="triton statistics API",
        requests=int(count),
        total_ms=round(sum(per_request.values()), 4),
        **per_request,
    )


def histogram_timings(before: Snapshot, after: Snapshot, source: TimingsSource) -> ServerTimings | None:
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if count <= 0:
        return None
    total = (after.get("sum", 0.0) - before.get("sum", 0.0)) / count * source.unit_ms
    return ServerTimings(source=source.description, requests=int(count), total_ms=round(total, 4))


def gauge_timings(samples: list[Snapshot], source: TimingsSource) -> ServerTimings | None:
    """The mean of each gauge over the samples taken in the window."""
    figures: dict[str, float] = {}
    for key in source.gauges:
        values = [sample[key] * source.unit_ms for sample in samples if key in sample]
        if values:
            figures[key] = round(sum(values) / len(values), 4)
    if not figures:
        return None
    inside = [figures[k] for k in ("queue_ms", "handler_ms") if k in figures]
    return ServerTimings(
        source=source.description, total_ms=round(sum(inside), 4) if inside else None, **figures
    )


def fetch_text(url: str, timeout_s: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return response.read().decode("utf-8", errors="replace")


@dataclass
class Sampler:
    """Snapshots of one server's figures for one model; ``read`` returns the current ones."""

    source: TimingsSource
    read: Callable[[], Snapshot]
    samples: list[Snapshot] = field(default_factory=list)

    def snapshot(self) -> Snapshot:
        snapshot = self.read()
        self.samples.append(snapshot)
        return snapshot

    def timings(self, before: Snapshot, after: Snapshot, during: list[Snapshot]) -> ServerTimings | None:
        if self.source.kind == "triton_statistics":
            return triton_timings(before, after)
        if self.source.kind == "prometheus_histogram":
            return histogram_timings(before, after, self.source)
        return gauge_timings([*during, after], self.source)


def make_sampler(source: TimingsSource, model: str, client: Any = None, metrics_url: str = "") -> Sampler:
    """A sampler for ``source``: Triton's through ``client`` (its ``inference_statistics``), the others
    by scraping ``metrics_url``."""
    if source.kind == "triton_statistics":
        if client is None:
            raise ValueError("a triton_statistics source needs a client")
        return Sampler(source, lambda: dict(client.inference_statistics(model)))
    if not metrics_url:
        raise ValueError(f"a {source.kind} source needs the server's metrics URL")
    return Sampler(source, lambda: prometheus_snapshot(fetch_text(metrics_url), source, model))
