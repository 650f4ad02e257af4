"""One process's share of a run, and the Locust event hooks that drive it.

- ``init``: a headless local or master process resolves its options and runs the preflight checks
  now, so a wrong target, model or manifest fails before any load. A web-UI master may start without
  a model (it is chosen in the form); a worker gets the master's options with each test.
- ``test_start``: options re-read (the web UI can change them), preflight where anything changed,
  the run's clock starts.
- every worker stats report carries the worker's HdrHistograms to the master, which merges them.
- the end of the run (``quitting`` headless, ``test_stop`` in the web UI): results, Pushgateway.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import gevent
import gevent.lock
from locust.env import Environment
from locust.runners import LocalRunner, MasterRunner, WorkerRunner

from imgbench.errors import ImgbenchError
from imgbench.observability import latency_buckets
from loadgen import exporter, results
from loadgen.client_cpu import ClientFacts, CpuWatch
from loadgen.options import LoadOptions
from loadgen.plan import LoadPlan
from loadgen.preflight import Prepared, prepare
from loadgen.recorder import Recorder
from loadgen.server_side import ServerSideWatch

log = logging.getLogger(__name__)
REPORT_KEY = "imgbench"
CLIENT_REPORT_KEY = "imgbench_client"
PREPARED_MESSAGE = "imgbench_prepared"
CLOCK_MESSAGE = "imgbench_clock"
WORKER_WAIT_S = 120.0
"""How long a master waits beyond --preflight-timeout for its workers' preflight."""
MASTER_RESULTS_DELAY_S = 4.0
"""Web-UI runs on a master: wait for the workers' last stats report (every 3 s) before writing."""


class LoadSession:
    """State every user of this process shares: the plan, the recorder, the clock and the bounds."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self.options: LoadOptions | None = None
        self.prepared: Prepared | None = None
        self.recorder = Recorder()
        self.started = time.perf_counter()
        self.issued = 0
        self.in_flight = 0
        self.ended_at: float | None = None
        self.stop_reason = "plan completed"
        self.results_written = False
        self.registry: Any = None
        self._plan: LoadPlan | None = None
        # A worker may get its first test while its init-time preflight still runs (gRPC yields).
        self.configuring = gevent.lock.Semaphore()
        self.workers_prepared: dict[str, dict[str, Any]] = {}
        self.master_started_wall: float | None = None
        self.server_side: ServerSideWatch | None = None
        self.client = ClientFacts()
        """The generator's own CPU per step window and open-loop lateness (``loadgen.client_cpu``)."""
        self.cpu_watch: CpuWatch | None = None

    @property
    def is_master(self) -> bool:
        return isinstance(self.environment.runner, MasterRunner)

    @property
    def is_worker(self) -> bool:
        return isinstance(self.environment.runner, WorkerRunner)

    @property
    def ready(self) -> bool:
        return self.prepared is not None

    @property
    def plan(self) -> LoadPlan:
        if self._plan is None:
            raise RuntimeError("no options resolved yet")
        return self._plan

    # -- configuration -------------------------------------------------------------------------
    def configure(self) -> None:
        """Resolve options from Locust's parsed options; prepare again only if what is loaded changed."""
        with self.configuring:
            self._configure()

    def _configure(self) -> None:
        options = LoadOptions.from_parsed(self.environment.parsed_options)
        same = self.options is not None and _load_key(self.options) == _load_key(options)
        self.options = options
        self._plan = options.plan()
        if not (same and self.prepared is not None):
            self.prepared = None
            self.prepared = prepare(options, calibrate=not self.is_master)
        else:
            self.prepared.options = options
        if not self.is_worker:
            # Only this backend's user class runs (the shape also names it on every tick).
            self.environment.user_classes = [
                c for c in self.environment.user_classes if getattr(c, "backend", None) == options.backend
            ] or self.environment.user_classes

    # -- clock ---------------------------------------------------------------------------------
    def start(self, at: float) -> None:
        """The run's clock starts ``at`` (perf_counter): when the test started here, before any
        preflight at test start, so every process's plan lines up with the master's shape."""
        assert self.options is not None
        edges = latency_buckets(self.options.slo)
        if edges != self.recorder.edges:  # a new --slo: the exporter's buckets follow it
            self.recorder = Recorder(edges=edges)
        self.recorder.reset_run()
        self.started = at
        self.issued, self.ended_at, self.results_written = 0, None, False
        if self.cpu_watch is not None:
            self.cpu_watch.stop()
        self.client = ClientFacts()
        self.cpu_watch = CpuWatch(self.plan, at, self.client).start()
        self.stop_reason = "plan completed"
        if not self.is_worker:  # one view of the server per run, from the process that writes results
            if self.server_side is not None:
                self.server_side.stop()
            self.server_side = ServerSideWatch(self.options, self.plan)
            self.server_side.start(at)

    def elapsed(self, at: float | None = None) -> float:
        return (time.perf_counter() if at is None else at) - self.started

    # -- bounds --------------------------------------------------------------------------------
    def may_issue(self) -> bool:
        """Count one more request against --max-requests; False once the bound is reached."""
        assert self.options is not None
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
        if self.options is None:
            return ("", "", ""), 0, 0.0
        runner = self.environment.runner
        users = runner.user_count if runner is not None else 0
        rate = 0.0
        if self.options.mode == "open" and self.ended_at is None and users:
            rate = float(self.plan.point_at(self.elapsed()).rate or 0.0)
        return self.options.labels, users, rate

    # -- results -------------------------------------------------------------------------------
    def preflight_facts(self) -> dict[str, Any]:
        """This process's preflight facts; a master (which loads no images) adds its workers' idle pass
        (pool size, images kept, accuracy at rest) from the first worker that reported one."""
        assert self.prepared is not None
        facts = dict(self.prepared.facts)
        for worker in self.workers_prepared.values():
            for key, value in (worker.get("facts") or {}).items():
                facts.setdefault(key, value)
        return facts

    def write_results(self) -> None:
        if self.results_written or self.options is None or self.prepared is None:
            return
        self.results_written = True
        elapsed = self.ended_at if self.ended_at is not None else self.elapsed()
        data = results.build(
            run_id=self.options.run_id,
            config=self.options.describe(),
            plan=self.plan,
            recorder=self.recorder,
            elapsed_s=elapsed,
            preflight=self.preflight_facts(),
            stop_reason=self.stop_reason,
            server_timings=self.server_side.stop() if self.server_side else None,
            client=self.client,
        )
        json_path, csv_path = results.write(data, self.options.results_dir)
        for row in data.points:
            log.info(
                "%s %s: n=%s p50=%s p99=%s p99.9=%s max=%s ms, %s req/s, errors=%s incorrect=%s, %s",
                row.server.label, row.point, row.n, row.p50_ms, row.p99_ms, row.p999_ms,
                row.max_ms, row.throughput_rps, row.errors, row.incorrect, results.client_summary(row),
            )  # fmt: skip
            if row.client_bound and row.client is not None:
                reasons = "; ".join(row.client.reasons)
                log.warning("%s: CLIENT-BOUND: %s; %s", row.point, reasons, row.client.advice)
        log.info("results: %s, %s", json_path, csv_path)


def _load_key(options: LoadOptions) -> tuple[Any, ...]:
    """What the preflight depends on: when none of it changed, the prepared pool is still right."""
    return (
        options.backend, options.model, options.batch_size, options.target, options.model_repository,
        options.dataset, options.images, options.keep_misclassified, options.seed, options.auth_token,
        options.auth_key_file, options.image_sizes,
    )  # fmt: skip


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
    _session = session = LoadSession(environment)
    session.recorder = Recorder(edges=latency_buckets(float(getattr(environment.parsed_options, "slo", 0.1))))
    headless = bool(environment.parsed_options and environment.parsed_options.headless)
    if session.is_worker:
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__(REPORT_KEY, session.recorder.drain())
        )
        environment.events.report_to_master.add_listener(
            lambda client_id, data: data.__setitem__(CLIENT_REPORT_KEY, session.client.drain())
        )
        # With the options at hand (same flags or environment as the master), the preflight runs now,
        # not when the test starts: a worker busy preparing would start its share of the plan late.
        if getattr(environment.parsed_options, "model", "") or environment.parsed_options.backend == "health":
            try:
                session.configure()
            except ImgbenchError as exc:
                log.warning("preflight failed (%s); tried again when the master starts a test", exc)
        environment.runner.register_message(
            CLOCK_MESSAGE,
            lambda environment, msg, **_: setattr(session, "master_started_wall", msg.data["wall"]),
        )
        # Locust registers a worker before its init hooks run: tell the master when this one can load.
        facts = session.prepared.facts if session.prepared is not None else {}
        environment.runner.send_message(PREPARED_MESSAGE, {"prepared": session.ready, "facts": facts})
        return
    try:
        session.configure()
    except ImgbenchError as exc:
        if headless:
            _fail(str(exc))
            return
        log.warning("not ready yet (%s); checked again when a test starts from the web UI", exc)
    if session.is_master:
        environment.runner.register_message(
            PREPARED_MESSAGE,
            lambda environment, msg, **_: session.workers_prepared.update({msg.node_id: msg.data}),
        )

        def on_worker_report(client_id: str, data: dict[str, Any]) -> None:
            if REPORT_KEY in data:
                session.recorder.merge(data[REPORT_KEY])
            if CLIENT_REPORT_KEY in data:
                session.client.merge(data[CLIENT_REPORT_KEY])

        environment.events.worker_report.add_listener(on_worker_report)
    metrics_port = int(getattr(environment.parsed_options, "metrics_port", 0) or 0)
    session.registry = exporter.make_registry(
        exporter.LoadgenCollector(lambda: session.recorder, session.gauges)
    )
    if metrics_port:
        exporter.serve(session.registry, environment.parsed_options.metrics_host, metrics_port)


def on_test_start(environment: Environment) -> None:
    entered = time.perf_counter()
    session = current()
    if session.is_worker and session.master_started_wall is not None:
        # The master's plan started when it sent its clock (just before the spawn message): a worker
        # that gets here late still ends its share of the plan when the master ends the run.
        entered -= max(0.0, time.time() - session.master_started_wall)
        session.master_started_wall = None
    try:
        session.configure()
    except ImgbenchError as exc:
        log.error("cannot start the load: %s", exc)
        session.prepared = None
        if not session.is_worker:
            gevent.spawn(environment.runner.stop)
        return
    if session.is_master:
        _wait_for_workers(session)
        entered = time.perf_counter()  # Locust starts the shape's clock after this hook, too
        environment.runner.send_message(CLOCK_MESSAGE, {"wall": time.time()})
    session.start(at=entered)


def _wait_for_workers(session: LoadSession) -> None:
    """Hold the start (and the shape's clock) until every connected worker finished its init-time
    preflight, so that no worker begins its share of the plan late."""
    assert session.options is not None
    runner = session.environment.runner
    deadline = time.monotonic() + session.options.preflight_timeout + WORKER_WAIT_S
    logged = False
    while time.monotonic() < deadline:
        waiting = [c.id for c in runner.clients.ready if c.id not in session.workers_prepared]
        if not waiting:
            return
        if not logged:
            log.info("waiting for the preflight of %d worker(s)", len(waiting))
            logged = True
        gevent.sleep(0.2)
    log.warning("workers still preparing after %.0f s; starting anyway", WORKER_WAIT_S)


def on_test_stop(environment: Environment) -> None:
    session = current()
    session.ended_at = session.elapsed()
    if session.is_worker or environment.parsed_options.headless:
        return  # headless runs write at `quitting`, after the workers' final reports
    if session.is_master:
        gevent.spawn_later(MASTER_RESULTS_DELAY_S, session.write_results)
    else:
        session.write_results()


def on_quitting(environment: Environment) -> None:
    if _session is None or _session.is_worker:
        return
    session = current()
    session.write_results()
    options = session.options
    if options and options.pushgateway_url and environment.parsed_options.headless:
        try:
            exporter.push(session.registry, options.pushgateway_url, options.run_id)
        except OSError as exc:
            log.error("could not push metrics to %s: %s", options.pushgateway_url, exc)
            environment.process_exit_code = 3
