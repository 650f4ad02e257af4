"""Prometheus metrics of the load generator, with the names, labels and buckets of
``imgbench.observability``: served on the metrics port while Locust runs (master or local process),
pushed to the Pushgateway when a headless run ends.

The latency histogram's buckets are counted per request by the recorder (exactly at the edges) and
merged on the master like the HdrHistograms, so a distributed run exports what all workers measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, push_to_gateway, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from imgbench import observability as obs
from loadgen.recorder import BucketTally, Recorder

log = logging.getLogger(__name__)
PUSH_JOB = "imgbench_loadgen"


class LoadgenCollector(Collector):
    def __init__(
        self,
        recorder: Callable[[], Recorder],
        gauges: Callable[[], tuple[tuple[str, str, str], int, float]],
    ) -> None:
        """``gauges()`` gives (labels, users, target rate) now; the buckets are the recorder's
        (``latency_buckets(--slo)``)."""
        self.recorder = recorder
        self.gauges = gauges

    def _bucket_counts(self, tally: BucketTally) -> list[tuple[str, float]]:
        labels = [repr(edge) for edge in tally.edges] + ["+Inf"]
        return list(zip(labels, tally.cumulative(), strict=True))

    def collect(self) -> Iterator[Metric]:
        labels = list(obs.LABELS)
        latency = HistogramMetricFamily(
            obs.REQUEST_LATENCY,
            "Request latency as the client saw it (open loop: from the scheduled time).",
            labels=labels,
        )
        requests = CounterMetricFamily(
            obs.REQUESTS, "Requests completed, whatever the outcome.", labels=labels
        )
        errors = CounterMetricFamily(
            obs.REQUEST_ERRORS, "Requests that failed.", labels=[*labels, obs.ERROR_CODE_LABEL]
        )
        incorrect = CounterMetricFamily(obs.INCORRECT_ANSWERS, "Answers with a wrong top-1.", labels=labels)
        images = CounterMetricFamily(obs.IMAGES, "Images sent.", labels=labels)
        for key, tally in sorted(self.recorder().exported.items()):
            values = list(key)
            latency.add_metric(values, self._bucket_counts(tally), tally.latency_sum_s)
            requests.add_metric(values, tally.requests)
            incorrect.add_metric(values, tally.incorrect)
            images.add_metric(values, tally.images)
            for code, count in sorted(tally.errors.items()):
                errors.add_metric([*values, code], count)
        key, user_count, rate = self.gauges()
        users = GaugeMetricFamily(obs.USERS, "Concurrent users (closed loop).", labels=labels)
        users.add_metric(list(key), user_count)
        target_rate = GaugeMetricFamily(
            obs.TARGET_RATE, "Scheduled request rate (open loop); 0 in closed loop.", labels=labels
        )
        target_rate.add_metric(list(key), rate)
        yield from (latency, requests, errors, incorrect, images, users, target_rate)


def make_registry(collector: LoadgenCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def serve(registry: CollectorRegistry, host: str, port: int) -> None:
    start_http_server(port, addr=host, registry=registry)
    log.info("Prometheus metrics on http://%s:%d/metrics", host, port)


def push(registry: CollectorRegistry, gateway: str, run_id: str) -> None:
    """Replace this run's group on the Pushgateway (grouping key: the run id)."""
    push_to_gateway(gateway, job=PUSH_JOB, registry=registry, grouping_key={"run_id": run_id}, timeout=10)
    log.info("pushed metrics to %s (job %s, run_id %s)", gateway, PUSH_JOB, run_id)
