"""The server's own view of each load point, sampled while the load runs: a snapshot of the server's
figures at each point's measured-window start and end (gauges also every second in between), turned
into ``ServerTimings`` by ``imgbench.server_view``. What each server offers is data in the server
registry (``ServerSpec.timings``): Triton's statistics API, the stand-in's request-latency histogram,
TorchServe's queue and handler gauges.

The metrics endpoint is ``IMGBENCH_SERVER_METRICS_URL`` (the native stack sets it), else the server's
default metrics port on the target's host. A server that cannot be read leaves its points without
timings, said in the log: the client-side results never depend on it.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import gevent

from imgbench import servers
from imgbench.load_results import ServerTimings
from imgbench.server_view import Sampler, Snapshot, make_sampler
from loadgen.backends import make_client
from loadgen.options import LoadOptions
from loadgen.plan import LoadPlan

log = logging.getLogger(__name__)
METRICS_URL_ENV = "IMGBENCH_SERVER_METRICS_URL"
GAUGE_PERIOD_S = 1.0


def metrics_url(options: LoadOptions, spec: servers.ServerSpec) -> str:
    if os.environ.get(METRICS_URL_ENV):
        return os.environ[METRICS_URL_ENV]
    host = options.target.rpartition(":")[0] or "127.0.0.1"
    return f"http://{host}:{spec.ports[spec.metrics_port]}{spec.metrics_path}"


class ServerSideWatch:
    """Samples one server for one run; ``timings`` maps a step's index to its ``ServerTimings``."""

    def __init__(self, options: LoadOptions, plan: LoadPlan) -> None:
        self.options = options
        self.plan = plan
        self.timings: dict[int, ServerTimings] = {}
        self.spec = servers.SERVERS.get(options.backend)
        self._greenlet: Any = None
        self._client: Any = None

    @property
    def source(self) -> servers.TimingsSource | None:
        return self.spec.timings if self.spec else None

    def start(self, started_at: float) -> None:
        """Begin sampling for a plan whose clock started at ``started_at`` (perf_counter)."""
        if self.source is None or self.spec is None:
            return
        try:
            sampler = self._sampler(self.source, self.spec)
        except Exception as exc:  # a server view is extra: never stop the load for it
            log.warning("server-side view of %s unavailable: %s", self.options.backend, exc)
            return
        self._greenlet = gevent.spawn(self._run, sampler, started_at)

    def _sampler(self, source: servers.TimingsSource, spec: servers.ServerSpec) -> Sampler:
        o = self.options
        if source.kind == "triton_statistics":
            self._client = make_client(o.backend, o.target, o.model_repository, o.deadline, o.auth_token)
            return make_sampler(source, o.model, client=self._client)
        return make_sampler(source, o.model, metrics_url=metrics_url(o, spec))

    def _snapshot(self, sampler: Sampler) -> Snapshot | None:
        try:
            return sampler.snapshot()
        except Exception as exc:
            log.warning("server-side view of %s: cannot read it (%s)", self.options.backend, exc)
            return None

    def _run(self, sampler: Sampler, started_at: float) -> None:
        gauges = sampler.source.kind == "prometheus_gauges"
        for step in self.plan.steps:
            start, end = self.plan.measured_window(step)
            gevent.sleep(max(0.0, started_at + start - time.perf_counter()))
            before = self._snapshot(sampler)
            during: list[Snapshot] = []
            while (left := started_at + end - time.perf_counter()) > 0:
                gevent.sleep(min(GAUGE_PERIOD_S, left) if gauges else left)
                if gauges and time.perf_counter() < started_at + end and (sample := self._snapshot(sampler)):
                    during.append(sample)
            after = self._snapshot(sampler)
            if before is not None and after is not None:
                timings = sampler.timings(before, after, during)
                if timings is not None:
                    self.timings[step.index] = timings

    def stop(self) -> dict[int, ServerTimings]:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)
            self._greenlet = None
        if self._client is not None:
            self._client.close()
            self._client = None
        return dict(self.timings)
