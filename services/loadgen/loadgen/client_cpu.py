"""The load generator's own cost per load point, and the ``client_bound`` verdict.

Every process (local, master, each worker) samples its own CPU time (user + system, all its threads:
gRPC's included) at the start and the end of each step's measured window, and, open loop, how late
each request left after its scheduled time. Workers send what they have with their stats reports;
the master adds its own. The results then say, per point, how much CPU the generator spent per
request and whether the generator, not the server, limited the point:

- **saturated**: a process used ``SATURATED_SHARE`` (90%) or more of one core in the window. A load
  process runs its users on one gevent loop under the GIL, so one core is all it can use; at 90% the
  loop has next to no idle time, every answer waits for the loop before it is timed, and the figures
  carry our queueing (10% is left for sampling noise and for gRPC's own threads, whose time counts
  towards the process too, so the verdict errs towards saying "client-bound").
- **in the latency** (closed loop): the generator's CPU per request is ``LATENCY_SHARE`` (10%) or
  more of the mean latency it measured. A closed-loop user does its own work for a request (build the
  call, wait for the loop, record the answer) between sends, so that work sits serially in every cycle;
  at 10% the point is no longer within the 10% of an independent client that imgbench aims for, even
  when no process is saturated (a starved machine, or a server faster than the generator).
- **late** (open loop): ``LATE_SHARE`` (5%) or more of the sends left more than ``LATE_AFTER_S``
  (1 ms) after their scheduled time: the schedule slipped, so the offered load was not the one asked
  for. Latency is still measured from the schedule (no coordinated omission), but a late send's
  latency includes our delay. 1 ms is below any model server's p50 here and far above gevent's timer
  jitter on an idle loop (tens of µs).

    >>> facts = ClientFacts()
    >>> facts.add_process(0, cpu_s=0.5, wall_s=1.0)
    >>> load, cpu_ms, bound = verdict(facts, requests=1000, window_s=1.0, mode="closed")
    >>> cpu_ms, bound, load.max_process_utilisation
    (0.5, False, 0.5)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import gevent
import psutil
from hdrh.histogram import HdrHistogram

from imgbench.load_results import ClientLoad
from loadgen.plan import LoadPlan
from loadgen.recorder import new_histogram, to_us

SATURATED_SHARE = 0.9
LATE_AFTER_S = 0.001
LATE_SHARE = 0.05
LATENCY_SHARE = 0.1
LATENESS_PERCENTILES = (50.0, 90.0, 99.0, 99.9, 100.0)
ADVICE = (
    "the load generator limited this point (its figures are a lower bound of the server's): run more "
    "load processes (--processes N; the default is one per core) or workers on another machine "
    "(--master here, --worker there), and keep the server off the generator's cores"
)


def _busy(times: Any) -> tuple[float, float]:
    """(busy, total) seconds of ``psutil.cpu_times()``: idle and iowait are not busy."""
    total = sum(times)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


@dataclass
class Lateness:
    """Open loop: how late each measured send left after its schedule (µs)."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    sends: int = 0
    late: int = 0

    def add(self, lateness_s: float) -> None:
        self.sends += 1
        if lateness_s > LATE_AFTER_S:
            self.late += 1
        self.histogram.record_value(to_us(lateness_s))

    def encode(self) -> dict[str, Any]:
        encoded = self.histogram.encode().decode("ascii") if self.histogram.get_total_count() else ""
        return {"histogram": encoded, "sends": self.sends, "late": self.late}

    def merge(self, encoded: dict[str, Any]) -> None:
        if encoded["histogram"]:
            self.histogram.decode_and_add(encoded["histogram"].encode("ascii"))
        self.sends += encoded["sends"]
        self.late += encoded["late"]


@dataclass
class ClientFacts:
    """What one process (or, on the master, all of them) knows about the generator's own cost."""

    processes: dict[int, list[dict[str, float]]] = field(default_factory=dict)
    """Step index -> one sample per process: cpu_s, wall_s (and host busy/total seconds)."""
    lateness: dict[int, Lateness] = field(default_factory=dict)

    def add_process(
        self, step: int, *, cpu_s: float, wall_s: float, host_busy_s: float = 0.0, host_s: float = 0.0
    ) -> None:
        sample = {"cpu_s": cpu_s, "wall_s": wall_s, "host_busy_s": host_busy_s, "host_s": host_s}
        self.processes.setdefault(step, []).append(sample)

    def late(self, step: int, lateness_s: float) -> None:
        tally = self.lateness.get(step)
        if tally is None:
            tally = self.lateness[step] = Lateness()
        tally.add(lateness_s)

    def drain(self) -> dict[str, Any]:
        """What was gathered since the last drain, encoded (a worker's stats report); then empty."""
        encoded = {
            "processes": {str(step): samples for step, samples in self.processes.items()},
            "lateness": {str(step): tally.encode() for step, tally in self.lateness.items()},
        }
        self.processes, self.lateness = {}, {}
        return encoded

    def merge(self, encoded: dict[str, Any]) -> None:
        for step, samples in encoded["processes"].items():
            self.processes.setdefault(int(step), []).extend(samples)
        for step, tally in encoded["lateness"].items():
            self.lateness.setdefault(int(step), Lateness()).merge(tally)


class CpuWatch:
    """Samples this process's CPU time at every step's measured-window edges (one greenlet)."""

    def __init__(self, plan: LoadPlan, started: float, facts: ClientFacts) -> None:
        self.plan, self.started, self.facts = plan, started, facts
        self.process = psutil.Process()
        self.greenlet: gevent.Greenlet | None = None

    def sample(self) -> tuple[float, float, float, float]:
        cpu = self.process.cpu_times()
        busy, total = _busy(psutil.cpu_times())
        return time.perf_counter(), cpu.user + cpu.system, busy, total

    def start(self) -> CpuWatch:
        self.greenlet = gevent.spawn(self._run)
        return self

    def stop(self) -> None:
        if self.greenlet is not None:
            self.greenlet.kill(block=False)

    def _run(self) -> None:
        for step in self.plan.steps:
            begin_s, end_s = self.plan.measured_window(step)
            gevent.sleep(max(0.0, self.started + begin_s - time.perf_counter()))
            first = self.sample()
            gevent.sleep(max(0.0, self.started + end_s - time.perf_counter()))
            last = self.sample()
            self.facts.add_process(
                step.index,
                cpu_s=last[1] - first[1],
                wall_s=last[0] - first[0],
                host_busy_s=last[2] - first[2],
                host_s=last[3] - first[3],
            )


def verdict(
    facts: ClientFacts,
    *,
    requests: int,
    window_s: float,
    mode: str,
    step: int = 0,
    mean_latency_ms: float | None = None,
) -> tuple[ClientLoad | None, float | None, bool | None]:
    """(facts, CPU ms per request, client_bound) of one step. ``None``s where no process sampled the
    window (a run cut short before it): not measured, said as such, never guessed."""
    samples = [s for s in facts.processes.get(step, []) if s["wall_s"] > 0]
    if not samples or window_s <= 0:
        return None, None, None
    shares = [s["cpu_s"] / s["wall_s"] for s in samples]
    cpu_s = sum(shares) * window_s  # each process's rate over the same window
    host = [s["host_busy_s"] / s["host_s"] for s in samples if s.get("host_s", 0) > 0]
    reasons = []
    busiest = max(shares)
    if busiest >= SATURATED_SHARE:
        reasons.append(
            f"a load process used {busiest:.0%} of a core (saturated at {SATURATED_SHARE:.0%}): "
            "its event loop had no idle time"
        )
    cpu_ms = round(cpu_s * 1000 / requests, 4) if requests else None
    if (
        mode == "closed"
        and cpu_ms is not None
        and mean_latency_ms
        and cpu_ms >= LATENCY_SHARE * mean_latency_ms
    ):
        reasons.append(
            f"the generator spent {cpu_ms * 1000:.0f} µs of CPU per request, {cpu_ms / mean_latency_ms:.0%} "
            f"of the {mean_latency_ms:.2f} ms mean latency (client-bound from {LATENCY_SHARE:.0%}): "
            "its own work is in every closed-loop cycle"
        )
    lateness: dict[str, float] = {}
    late = late_share = None
    if mode == "open":
        tally = facts.lateness.get(step, Lateness())
        late = tally.late
        late_share = tally.late / tally.sends if tally.sends else 0.0
        if tally.sends:
            lateness = {
                f"{q:g}": round(tally.histogram.get_value_at_percentile(q) / 1000, 3)
                for q in LATENESS_PERCENTILES
            }
        if late_share >= LATE_SHARE:
            reasons.append(
                f"{late_share:.1%} of the sends left more than {LATE_AFTER_S * 1000:g} ms after their "
                f"schedule (client-bound from {LATE_SHARE:.0%}): the offered rate slipped"
            )
    load = ClientLoad(
        processes=len(samples),
        cpu_s=round(cpu_s, 4),
        utilisation=round(sum(shares), 4),
        max_process_utilisation=round(busiest, 4),
        host_utilisation=round(min(1.0, max(host)), 4) if host else None,
        threshold=SATURATED_SHARE,
        late_sends=late,
        late_share=round(late_share, 4) if late_share is not None else None,
        late_after_ms=LATE_AFTER_S * 1000 if mode == "open" else None,
        late_share_threshold=LATE_SHARE if mode == "open" else None,
        lateness_ms=lateness,
        reasons=reasons,
        advice=ADVICE if reasons else "",
    )
    return load, cpu_ms, bool(reasons)
