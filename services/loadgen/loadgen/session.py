"""One process's share of a run, and the Locust event hooks that drive it: options and preflight at
``init``, the clock at ``test_start``, worker histograms to the master with every stats report, results
and the Pushgateway push when the run ends.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import gevent
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from imgbench.errors import ImgbenchError
from loadgen import exporter, results
from loadgen.options import LoadOptions
from loadgen.preflight import Prepared, prepare
from loadgen.recorder import Recorder

log = logging.getLogger(__name__)
REPORT_KEY = "imgbench"
MASTER_RESULTS_DELAY_S = 4.0
"""Web-UI runs on a master: wait for the workers' last stats report (every 3 s) before writing."""


class LoadSession:
    """State every user of this process shares: the plan, the recorder, the clock and the bounds."""

    def __init__(self, environment: Environment, options: LoadOptions, prepared: Prepared) -> None:
        self.environment = environment
        self.options = options
        self.plan = options.plan()
        self.prepared = prepared
        self.recorder = Recorder()
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.issued = 0
        self.in_flight = 0
        self.ended_at: float | None = None
        self.stop_reason = "plan completed"
        self.results_written = False
        self.registry: Any = None

    # -- clock ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.plan = self.options.plan()
        self.recorder.reset_run()
        self.started = time.perf_counter()
        self.started_wall = time.time()
        self.issued, self.ended_at, self.results_written = 0, None, False
        self.stop_reason = "plan completed"

    def elapsed(self, at: float | None = None) -> float:
        return (time.perf_counter() if at is None else at) - self.started

    # -- bounds --------------------------------------------------------------------------------
    def may_issue(self) -> bool:
        """Count one more request against --max-requests; False once the bound is reached."""
        if self.issued >= self.options.max_requests:
            return False
        self.issued += 1
        if self.issued == self.options.max_requests:
            self.stop_reason = f"--max-requests {self.options.max_requests} reached"
            gevent.spawn(self._stop_after_drain)
        return True

    def _stop_after_drain(self) -> None:
        deadline = time.perf_counter() + self.plan.drain_s
        while self.in_flight and time.perf_counter() < deadline:
            gevent.sleep(0.05)
        runner = self.environment.runner
        # A worker's users just stop sending; the master's plan (or -t) ends the run.
        if isinstance(runner, LocalRunner):
            log.info("%s: stopping", self.stop_reason)
            runner.quit()

    # -- gauges --------------------------------------------------------------------------------
    def gauges(self) -> tuple[tuple[str, str, str], int, float]:
        runner = self.environment.runner
        users = runner.user_count if runner is not None else 0
        rate = 0.0
        if self.plan.mode == "open" and self.ended_at is None and users:
            rate = float(self.plan.point_at(self.elapsed()).rate or 0.0)
        return self.options.labels, users, rate

    # -- results -------------------------------------------------------------------------------
    def write_results(self) -> None:
        if self.results_written:
            return
        self.results_written = True
        elapsed = self.ended_at if self.ended_at is not None else self.elapsed()
        data = results.build(
            run_id=self.options.run_id,
            config=self.options.describe(),
            plan=self.plan,
            recorder=self.recorder,
            elapsed_s=elapsed,
            preflight=self.prepared.facts,
            stop_reason=self.stop_reason,
        )
        json_path, csv_path = results.write(data, self.options.results_dir)
        for row in data["rows"]:
            log.info(
                "%s %s: n=%s p50=%s p99=%s p99.9=%s max=%s ms, %s req/s, errors=%s incorrect=%s",
                row["backend"], row["point"], row["n"], row["p50_ms"], row["p99_ms"], row["p999_ms"],
                row["max_ms"], row["throughput_rps"], row["errors"], row["incorrect"],
            )  # fmt: skip
        log.info("results: %s, %s", json_path, csv_path)


_session: LoadSession | None = None


def current() -> LoadSession:
    if _session is None:
        raise RuntimeError("no load session: the locustfile's init hook did not run")
    return _session


def _fail(message: str) -> None:
    log.error("%s", message)
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


def on_init(environment: Environment) -> None:
    global _session
    runner = environment.runner
    is_master, is_worker = isinstance(runner, MasterRunner), isinstance(runner, WorkerRunner)
    try:
        options = LoadOptions.from_parsed(environment.parsed_options)
        prepared = prepare(options, calibrate=not is_master)
    except ImgbenchError as exc:
        _fail(str(exc))
        return
    # Only this backend's user class runs (the shape also names it on every tick).
    environment.user_classes = [
        c for c in environment.user_classes if getattr(c, "backend", None) == options.backend
    ]
    _session = session = LoadSession(environment, options, prepared)
    if is_worker:
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__(REPORT_KEY, session.recorder.drain())
        )
        return
    if is_master:

        def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
            if REPORT_KEY in data:
                session.recorder.merge(data[REPORT_KEY])

        environment.events.worker_report.add_listener(on_worker_report)
    session.registry = exporter.make_registry(
        exporter.LoadgenCollector(lambda: session.recorder, session.gauges, options.slo)
    )
    if options.metrics_port:
        exporter.serve(session.registry, options.metrics_host, options.metrics_port)


def on_test_start(environment: Environment) -> None:
    current().start()


def on_test_stop(environment: Environment) -> None:
    session = current()
    session.ended_at = session.elapsed()
    if isinstance(environment.runner, WorkerRunner) or environment.parsed_options.headless:
        return  # headless runs write at `quitting`, after the workers' final reports
    if isinstance(environment.runner, MasterRunner):
        gevent.spawn_later(MASTER_RESULTS_DELAY_S, session.write_results)
    else:
        session.write_results()


def on_quitting(environment: Environment) -> None:
    if _session is None or isinstance(environment.runner, WorkerRunner):
        return
    session = current()
    session.write_results()
    if session.options.pushgateway and environment.parsed_options.headless:
        try:
            exporter.push(session.registry, session.options.pushgateway, session.options.run_id)
        except OSError as exc:
            log.error("could not push metrics to %s: %s", session.options.pushgateway, exc)
            environment.process_exit_code = 3
