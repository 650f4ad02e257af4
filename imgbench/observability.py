"""Metric names, labels and histogram buckets, defined once: the load generator exports them,
Prometheus rules and Grafana dashboards query them, the report reads them.

Names follow Prometheus conventions: base units (seconds), ``_total`` on counters.
"""

from __future__ import annotations

from typing import Final

from imgbench import servers

# -- load generator (services/loadgen) ---------------------------------------------------------------
REQUEST_LATENCY: Final = "imgbench_request_latency_seconds"
"""Histogram: per-request latency as the client saw it (open loop: from the scheduled send time)."""
REQUESTS: Final = "imgbench_requests_total"
"""Counter: requests completed, whatever the outcome."""
REQUEST_ERRORS: Final = "imgbench_request_errors_total"
"""Counter: requests that failed (transport or server error), labelled also by ``code``."""
INCORRECT_ANSWERS: Final = "imgbench_incorrect_answers_total"
"""Counter: requests answered without error but with a wrong top-1 for at least one image."""
IMAGES: Final = "imgbench_images_total"
"""Counter: images sent (requests × batch size)."""
USERS: Final = "imgbench_users"
"""Gauge: concurrent users (closed loop)."""
TARGET_RATE: Final = "imgbench_target_rate_per_second"
"""Gauge: scheduled request rate (open loop); 0 in closed loop."""

LABELS: Final = ("backend", "model", "batch_size")
ERROR_CODE_LABEL: Final = "code"


def backends() -> tuple[str, ...]:
    """The ``backend`` label's values: the registered model servers."""
    return servers.server_names()


BACKENDS: Final = backends()

DEFAULT_SLO_SECONDS: Final = 0.1
"""p99 latency objective used by the SLO search, the alert rules and the dashboards unless overridden."""

_BASE_BUCKETS: Final = (
    0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04,
    0.05, 0.06, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0,
)  # fmt: skip


def latency_buckets(slo_seconds: float = DEFAULT_SLO_SECONDS) -> tuple[float, ...]:
    """Bucket upper bounds from 0.5 ms to 10 s, always with an edge exactly at the SLO, so
    "share of requests within the SLO" is exact and not interpolated.

    >>> 0.1 in latency_buckets(0.1) and 0.07 in latency_buckets(0.07)
    True
    """
    if slo_seconds <= 0:
        raise ValueError(f"SLO must be positive seconds, got {slo_seconds}")
    return tuple(sorted(set(_BASE_BUCKETS) | {round(slo_seconds, 6)}))
