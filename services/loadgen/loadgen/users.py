"""The Locust users: one class per registered server's protocol, the same behaviour, the protocol only
as data.

Closed loop: each user sends, waits for the answer, sends again (latency from the send time).
Open loop: each user is a scheduler that keeps its arrival schedule whatever the server does, sending
every due request from its own greenlet, and measures latency from the *scheduled* time, so a server
that stalls cannot hide its queue (no coordinated omission; wrk2, MLPerf LoadGen's Server scenario).
A due request that would exceed the in-flight cap is counted as a DROPPED error, never skipped.
"""

from __future__ import annotations

import random
import time
from typing import ClassVar

import gevent
import gevent.pool
from gevent import GreenletExit
from locust import User, task

from imgbench import servers
from loadgen.arrivals import make_arrivals
from loadgen.backends import Answer, Sender, error_code
from loadgen.recorder import Outcome
from loadgen.session import LoadSession, current


class IncorrectAnswer(Exception):
    """Shown as a failure in Locust's UI; the results count it apart from errors."""


class Dropped(Exception):
    """Open loop: the request was due while the in-flight cap was reached."""


class Unfinished(Exception):
    """Still in flight when the run's drain time ended."""


class InferenceUser(User):
    """Sends prepared batches of validation images to one model over one gRPC channel."""

    abstract = True
    backend: ClassVar[str] = ""
    """Protocol name in ``loadgen.backends.BACKENDS``: the only thing the subclasses set."""

    def __init__(self, environment: object) -> None:
        super().__init__(environment)
        self.session: LoadSession = current()
        self.sender: Sender | None = None
        self.next_request = 0
        self.backoff_s = 0.0
        self.schedule_done = False
        self.request_name = self.backend

    def wait_time(self) -> float:
        """No think time in closed loop (each user is one client at full speed); after an error, a short
        pause so a dead server is not hammered by a tight loop of instant failures."""
        return self.backoff_s

    def on_start(self) -> None:
        session = self.session
        if session.prepared is None or session.options is None:
            return  # the preflight failed (logged): this user idles until the run stops
        self.request_name = f"{self.backend} {session.options.model} b{session.options.batch_size}"
        self.sender = session.prepared.new_sender()
        # Users start at different prepared requests, so a batch is not sent by everyone at once.
        self.next_request = random.Random(id(self)).randrange(1 << 16)

    def on_stop(self) -> None:
        if self.sender is not None:
            self.sender.close()

    @task
    def load(self) -> None:
        if self.sender is None:
            self.backoff_s = 1.0
        elif self.session.plan.mode == "closed":
            self.closed_loop_request()
        else:
            self.open_loop_schedule()

    # -- closed loop ---------------------------------------------------------------------------
    def closed_loop_request(self) -> None:
        session = self.session
        if session.elapsed() >= session.plan.load_s or not session.may_issue():
            self.backoff_s = 0.5  # the plan or the request bound is over: idle until the run stops
            return
        session.recorder.issued += 1
        self.send(scheduled=None)

    # -- open loop -----------------------------------------------------------------------------
    def open_loop_schedule(self) -> None:
        session, plan, options = self.session, self.session.plan, self.session.options
        assert options is not None
        if self.schedule_done:
            self.backoff_s = 0.5
            return
        rng = random.Random(hash((options.seed, id(self))))
        arrivals = make_arrivals(options.arrivals, rng.randrange(1 << 30))
        in_flight = gevent.pool.Group()
        first = plan.steps[0]
        # Schedulers of one run start at random phases so that constant arrivals interleave.
        due = session.started + (rng.uniform(0, first.users / first.rate) if first.users > 1 else 0.0)  # type: ignore[operator]
        try:
            while True:
                elapsed = due - session.started
                if elapsed >= plan.load_s:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    gevent.sleep(delay)
                if not session.may_issue():
                    break
                session.recorder.issued += 1
                if len(in_flight) >= options.max_in_flight:
                    self.report(
                        due, None, "error", "DROPPED", Dropped(f"{options.max_in_flight} in flight"), 0
                    )
                else:
                    in_flight.spawn(self.send, due)
                step = plan.point_at(elapsed)
                due += arrivals.gap(step.rate / step.users)  # type: ignore[operator]
            in_flight.join(timeout=max(0.0, session.started + plan.total_s - time.perf_counter()))
        finally:
            in_flight.kill(block=True)  # each one still running reports itself UNFINISHED
            self.schedule_done = True

    # -- one request ---------------------------------------------------------------------------
    def send(self, scheduled: float | None) -> None:
        """Send one request; latency from ``scheduled`` (open loop) or from now (closed loop)."""
        assert self.sender is not None
        session = self.session
        index, self.next_request = self.next_request, self.next_request + 1
        session.in_flight += 1
        sent = time.perf_counter()
        origin = sent if scheduled is None else scheduled
        if scheduled is not None and session.plan.measured(elapsed := session.elapsed(scheduled)):
            session.client.late(session.plan.point_at(elapsed).index, sent - scheduled)
        try:
            answer: Answer = self.sender.send(index)
        except GreenletExit:
            self.report(origin, None, "error", "UNFINISHED", Unfinished("cut off by the end of the run"), 0)
            raise
        except Exception as exc:
            self.backoff_s = session.options.error_backoff if session.options else 1.0
            self.report(origin, time.perf_counter() - origin, "error", error_code(exc), exc, 0)
        else:
            latency = time.perf_counter() - origin
            self.backoff_s = 0.0
            if answer.correct is False:
                self.report(
                    origin,
                    latency,
                    "incorrect",
                    None,
                    IncorrectAnswer("top-1 differs from the label"),
                    answer.size_bytes,
                    disagree=answer.agrees is False,
                )
            else:
                self.report(
                    origin, latency, "ok", None, None, answer.size_bytes, disagree=answer.agrees is False
                )
        finally:
            session.in_flight -= 1

    def report(
        self,
        origin: float,
        latency_s: float | None,
        outcome: Outcome,
        code: str | None,
        exception: Exception | None,
        size_bytes: int,
        disagree: bool = False,
    ) -> None:
        """Into the lossless recorder (results, exporter) and through ``events.request`` (Locust's stats)."""
        session = self.session
        elapsed = session.elapsed(origin)
        step = session.plan.point_at(elapsed)
        images = self.sender.images_per_request if self.sender else 0
        if outcome == "incorrect" and session.options is not None and session.options.keep_misclassified:
            # Kept on purpose, a wrong top-1 is the model's error rate under load, not a fault: counted
            # in the results (incorrect), a success for Locust and its exit code.
            exception = None
        session.recorder.record(
            step.index,
            measured=session.plan.measured(elapsed),
            elapsed_s=elapsed,
            latency_s=latency_s,
            outcome=outcome,
            images=images,
            code=code,
            labels=session.options.labels if session.options else ("", "", ""),
            disagree=disagree,
        )
        self.environment.events.request.fire(
            request_type="grpc",
            name=self.request_name,
            response_time=(latency_s or 0.0) * 1000.0,
            response_length=size_bytes,
            exception=exception,
            context={"point": step.label, "outcome": outcome},
        )


def user_class(backend: str, label: str) -> type[InferenceUser]:
    """The Locust user of one protocol: ``InferenceUser`` with ``backend`` set, named after the server
    (``TFServingUser`` for label 'TF Serving')."""
    name = "".join(ch for ch in label if ch.isalnum()) + "User"
    return type(name, (InferenceUser,), {"backend": backend, "__module__": __name__})


def user_classes() -> dict[str, type[InferenceUser]]:
    """One user class per registered model server (``imgbench.servers``)."""
    return {name: user_class(name, spec.label) for name, spec in servers.SERVERS.items()}


USER_CLASSES = user_classes()


class HealthCheckUser(InferenceUser):
    """The load generator's own capacity against a trivial server (grpc.health.v1)."""

    backend = "health"
