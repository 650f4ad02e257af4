"""`make soak`: load held. Each native server in turn (TorchServe, Triton, and the TF Serving stand-in,
not the real TF Serving) serves a trained model at 70% of its measured SLO capacity for 30 minutes;
per 5-minute window the p50/p99 (each with its n), throughput, errors by gRPC code, the resident
memory of every process of the server's tree and the host's load average; then the p99 drift and the
memory growth. A benchmark (nothing asserted), not part of CI.

    .venv/core/bin/python -m imgbench.bench.soak [--run-dir RUN_DIR] [--servers torchserve,triton]
        [--minutes 30] [--window-minutes 5] [--slo-ms 100] [--fraction 0.7] [--rate R] [--end-by 14:20]

1. The model: RUN_DIR/model-repository if it holds one (or --model-repository), else both trainers
   train one there on the digits dataset (--epochs).
2. Capacity, per server (skipped with --rate): the loadgen's SLO search (``loadgen.sweep``: the
   highest Poisson arrival rate whose p99 ≤ --slo-ms with no errors), on a server of its own.
3. The soak, per server, on a freshly started server: one open-loop Poisson load generator run at
   --fraction of that rate, its steps the windows (each its own HdrHistogram; the first
   --warmup-seconds of every window are the loadgen's warm-up, left out of the latencies, while its
   errors still count), the server's process tree sampled every --sample-seconds (psutil).

Everything runs for a bounded time and stops by itself: the load generator's plan ends (and Locust's
``-t`` bounds it); the servers are stopped by PID at the end, also on a failure, Ctrl-C or SIGTERM.
With --end-by the minutes per server shrink so the run ends by then (capacity searches first).
Output: ``--out``/soak-<time>.json (date, commit, hardware, every window) and a table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil

from imgbench import servers
from imgbench.atomic import atomic_write_text
from imgbench.bench.soak_sampler import TreeSampler
from imgbench.bench.soak_windows import (
    Drift,
    MemoryGrowth,
    Window,
    memory_growth,
    p99_drift,
    split_evenly,
    window_bounds,
    windows,
)
from imgbench.catalog import CPU_DEFAULT_ARCHITECTURE
from imgbench.errors import ImgbenchError
from imgbench.load_results import load_load_result
from imgbench.paths import ModelRepository, project_root, venv_bin

log = logging.getLogger("imgbench.bench.soak")
SERVER_OVERHEAD_S = 120.0
"""Per server beyond its load, for --end-by: start-up (TorchServe ~30 s), the loadgen's preflight,
the drain, the stop."""
MIB = 2**20


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    # what
    parser.add_argument("--servers", default=",".join(servers.SERVERS), help="(default: %(default)s)")
    parser.add_argument("--run-dir", type=Path, default=None, help="(default: runs/soak-<time>)")
    parser.add_argument(
        "--model-repository", type=Path, default=None, help="(default: RUN_DIR/model-repository)"
    )
    parser.add_argument("--dataset", type=Path, default=None, help="(default: RUN_DIR/data/digits)")
    parser.add_argument("--architecture", default=CPU_DEFAULT_ARCHITECTURE, help="(default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=3, help="if one is trained (default: %(default)s)")
    # load
    parser.add_argument("--slo-ms", type=float, default=100.0, help="p99 objective (default: %(default)s)")
    parser.add_argument(
        "--fraction", type=float, default=0.7, help="of the SLO capacity (default: %(default)s)"
    )
    parser.add_argument(
        "--rate",
        action="append",
        default=None,
        help="req/s, no SLO search: R for every server, or SERVER=R, repeatable (default: search)",
    )
    parser.add_argument("--minutes", type=float, default=30.0, help="per server (default: %(default)s)")
    parser.add_argument("--window-minutes", type=float, default=5.0, help="(default: %(default)s)")
    parser.add_argument(
        "--end-by",
        default=None,
        help="HH:MM UTC (or an ISO time): fewer minutes per server so the run ends by then (default: no)",
    )
    parser.add_argument(
        "--warmup-seconds", type=float, default=5.0, help="left out of each window (default: %(default)s)"
    )
    parser.add_argument("--drain-seconds", type=float, default=5.0, help="(default: %(default)s)")
    parser.add_argument("--sample-seconds", type=float, default=5.0, help="RSS every (default: %(default)s)")
    # the SLO search (loadgen.sweep), short probes: its figure only sets the soak's rate
    parser.add_argument("--search-start-rate", type=float, default=20.0, help="(default: %(default)s)")
    parser.add_argument("--search-max-rate", type=float, default=2000.0, help="(default: %(default)s)")
    parser.add_argument("--search-seconds", type=float, default=10.0, help="per probe (default: %(default)s)")
    parser.add_argument("--search-min-samples", type=int, default=500, help="(default: %(default)s)")
    parser.add_argument("--search-tolerance", type=float, default=0.2, help="(default: %(default)s)")
    parser.add_argument("--search-max-probes", type=int, default=10, help="(default: %(default)s)")
    # output
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="(default: %(default)s)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan as JSON and exit")
    parser.add_argument(
        "--render", type=Path, default=None, help="print a results file as Markdown tables and exit"
    )
    return parser


# -- the plan ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    server: str
    model: str
    label: str
    stand_in: bool


@dataclass(frozen=True)
class Plan:
    cases: tuple[Case, ...]
    run_dir: Path
    model_repository: Path
    dataset: Path | None
    train: bool
    """No model in the repository yet: the trainers make one first."""
    minutes: float
    windows: int
    window_s: float

    def describe(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


def parse_end_by(text: str, now: datetime) -> datetime:
    """``HH:MM`` (UTC, today, or tomorrow if that has passed) or an ISO time with a zone."""
    try:
        if len(text) <= 5 and ":" in text:
            hours, minutes = (int(part) for part in text.split(":"))
            end = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
            return end if end > now else end + timedelta(days=1)
        end = datetime.fromisoformat(text)
    except ValueError:
        raise ImgbenchError(f"--end-by must be HH:MM (UTC) or an ISO time, got {text!r}") from None
    return end if end.tzinfo else end.replace(tzinfo=UTC)


def minutes_until(end: datetime, now: datetime, servers_left: int, wanted: float) -> float:
    """Whole minutes per server so that ``servers_left`` soaks (each with its overhead) end by ``end``.

    >>> now = datetime(2026, 12, 1, 13, 35, tzinfo=UTC)
    >>> minutes_until(datetime(2026, 12, 1, 14, 20, tzinfo=UTC), now, 3, 30.0)
    13.0
    """
    left_s = (end - now).total_seconds() - servers_left * SERVER_OVERHEAD_S
    available = math.floor(left_s / servers_left / 60)
    if available < 1:
        raise ImgbenchError(
            f"--end-by {end:%H:%M} UTC leaves {left_s / 60:.1f} min for {servers_left} soak(s): "
            "start earlier or soak fewer servers"
        )
    return float(min(wanted, available))


def fixed_rates(values: list[str], names: list[str]) -> dict[str, float]:
    """``--rate`` values: ``R`` for every server or ``SERVER=R``; the servers without one are searched.

    >>> fixed_rates(["triton=500", "torchserve=30.5"], ["torchserve", "triton"])
    {'triton': 500.0, 'torchserve': 30.5}
    """
    rates: dict[str, float] = {}
    for value in values:
        server, _, number = value.rpartition("=")
        try:
            rate = float(number)
        except ValueError:
            raise ImgbenchError(f"--rate must be R or SERVER=R (req/s), got {value!r}") from None
        if rate <= 0:
            raise ImgbenchError(f"--rate must be positive req/s, got {value!r}")
        if server and server not in names:
            raise ImgbenchError(
                f"--rate {value!r}: {server!r} is not soaked here; --servers: {', '.join(names)}"
            )
        rates.update({server: rate} if server else dict.fromkeys(names, rate))
    return rates


def make_plan(args: argparse.Namespace) -> Plan:
    names = [n.strip() for n in args.servers.split(",") if n.strip()]
    if not names:
        raise ImgbenchError(f"--servers names no server; known: {', '.join(servers.SERVERS)}")
    for flag, value in (("--fraction", args.fraction), ("--slo-ms", args.slo_ms)):
        if value <= 0:
            raise ImgbenchError(f"{flag} must be positive, got {value}")
    if args.fraction > 1:
        raise ImgbenchError(f"--fraction is of the capacity, at most 1, got {args.fraction}")
    args.rates = fixed_rates(args.rate or [], names)
    count, window_s = split_evenly(args.minutes, args.window_minutes)
    if not 0 <= args.warmup_seconds < window_s:
        raise ImgbenchError(
            f"--warmup-seconds {args.warmup_seconds} must be shorter than a window ({window_s} s)"
        )
    cases = []
    for name in names:
        spec = servers.get_server(name)  # an unknown name lists the known ones
        cases.append(
            Case(
                name,
                servers.default_model(name, args.architecture),
                spec.label + (" stand-in" if spec.native_stand_in else ""),
                spec.native_stand_in,
            )
        )
    run_dir = (args.run_dir or Path("runs") / f"soak-{datetime.now(UTC):%Y%m%d-%H%M%S}").resolve()
    repository = (args.model_repository or run_dir / "model-repository").resolve()
    present = set(ModelRepository(repository).models()) if (repository / "manifests").is_dir() else set()
    missing = [c.model for c in cases if c.model not in present]
    if missing and args.model_repository is not None:
        raise ImgbenchError(
            f"--model-repository {repository} has no {', '.join(missing)} (it has: "
            f"{', '.join(sorted(present)) or 'nothing'}); train them or leave the flag out to train here"
        )
    dataset = args.dataset.resolve() if args.dataset else None
    if dataset is None and (missing or (run_dir / "data" / "digits").is_dir()):
        dataset = run_dir / "data" / "digits"
    return Plan(tuple(cases), run_dir, repository, dataset, bool(missing), args.minutes, count, window_s)


# -- steps ------------------------------------------------------------------------------------------
def _settings(plan: Plan, args: argparse.Namespace):  # -> DemoSettings; imported late (rich, stages)
    from imgbench.demo import DemoSettings

    return DemoSettings(
        run_dir=plan.run_dir, architecture=args.architecture, epochs=args.epochs, edge_exports=False
    )


def train(plan: Plan, args: argparse.Namespace) -> None:
    """Both trainers, as `make bench` does (``imgbench.demo``'s stages), into RUN_DIR."""
    from imgbench.demo import stage_dataset, stage_train_pt, stage_train_tf

    settings = _settings(plan, args)
    stage_dataset(settings)
    stage_train_pt(settings)
    stage_train_tf(settings)


def _stack(plan: Plan, name: str):
    from imgbench.stack import Stack
    from imgbench.stack.ports import free_port_map

    return Stack(plan.run_dir / name, ports=free_port_map(), model_repository=plan.model_repository)


def _loadgen_launch(stack: Any, server: str) -> tuple[list[str], dict[str, str]]:
    """The loadgen as the stack runs it against ``server`` (argv, env: target, metrics URL, the
    TorchServe key file); callers append their own arguments, which override."""
    from imgbench.stack import loadgen as loadgen_service

    stack.options[loadgen_service.BACKEND_OPTION] = server
    launch = loadgen_service.build(stack.context())
    env = {**launch.env, "PYTHONPATH": str(project_root() / "services" / "loadgen")}
    env.pop("IMGBENCH_PUSHGATEWAY_URL", None)  # no Pushgateway in these stacks: nothing to push to
    return list(launch.argv), env


def search_capacity(case: Case, plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    """The loadgen's SLO search on a server of its own: the highest passing rate, its probes."""
    from imgbench.demo import run_logged

    started = time.time()
    out = plan.run_dir / "search" / f"{case.server}.json"
    with _stack(plan, f"search-{case.server}") as stack:
        stack.up([case.server])
        _, env = _loadgen_launch(stack, case.server)
        argv = [
            str(venv_bin("loadgen") / "python"), "-m", "loadgen.sweep",
            "--case", f"{case.server}:{case.model}",
            "--target", f"{case.server}=127.0.0.1:{stack.ports[case.server]['grpc']}",
            "--model-repository", str(plan.model_repository), "--slo", str(args.slo_ms / 1000),
            "--start-rate", str(args.search_start_rate), "--max-rate", str(args.search_max_rate),
            "--step-duration", str(args.search_seconds), "--min-samples", str(args.search_min_samples),
            "--tolerance", str(args.search_tolerance), "--max-probes", str(args.search_max_probes),
            "--warmup", "5", "--drain", "3", "--results-dir", str(plan.run_dir / "search" / case.server),
            "--run-id", "search", "--out", str(out),
            *(["--dataset", str(plan.dataset)] if plan.dataset else []),
        ]  # fmt: skip
        run_logged(f"search-{case.server}", argv, _settings(plan, args), env)
    (search,) = load_load_result(out).slo_search
    return {
        "max_rate": search.max_rate,
        "p99_ms_at_max": search.p99_ms,
        "slo_ms": search.slo_ms,
        "probes": search.probes,
        "seconds": round(time.time() - started, 1),
        "result": str(out),
    }


def loadgen_args(case: Case, plan: Plan, args: argparse.Namespace, rate: float) -> list[str]:
    """One open-loop run whose steps are the windows, all at ``rate``."""
    total_s = plan.windows * plan.window_s + args.drain_seconds
    return [
        "--headless", "--only-summary", "--model", case.model,
        "--mode", "open", "--arrivals", "poisson", "--rate-steps", ",".join([f"{rate:.2f}"] * plan.windows),
        "--step-duration", str(plan.window_s), "--warmup", str(args.warmup_seconds),
        "--drain", str(args.drain_seconds), "--slo", str(args.slo_ms / 1000),
        # Per load process, with a margin over the Poisson count: the plan, not this, ends the run.
        "--max-requests", str(int(rate * total_s * 1.5) + 1000),
        "--metrics-port", "0", "--results-dir", str(plan.run_dir / "soak" / case.server),
        "--run-id", "soak", "-t", f"{math.ceil(total_s) + 120}s",
        *(["--dataset", str(plan.dataset)] if plan.dataset else []),
    ]  # fmt: skip


def soak(case: Case, plan: Plan, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """One server, fresh: the load at ``rate`` for the plan's windows, its tree sampled meanwhile."""
    from imgbench.demo import StageFailed, run_logged

    with _stack(plan, f"soak-{case.server}") as stack:
        stack.up([case.server])
        (status,) = [s for s in stack.status() if s.name == case.server]
        sampler = TreeSampler(status.pid, args.sample_seconds).start()
        try:
            argv, env = _loadgen_launch(stack, case.server)
            argv += loadgen_args(case, plan, args, rate)
            load_avg_start = round(psutil.getloadavg()[0], 2)
            path = plan.run_dir / "soak" / case.server / "soak.json"
            loadgen_exit = "0"
            try:
                run_logged(f"soak-{case.server}", argv, _settings(plan, args), env)
            except StageFailed as exc:
                # Locust exits 1 when any request failed: errors are what a soak is for, so its
                # results count; only a run that wrote none failed.
                if not path.exists():
                    raise
                loadgen_exit = str(exc).splitlines()[0]
        finally:
            sampler.stop()
        load_avg_end = round(psutil.getloadavg()[0], 2)
    result = load_load_result(path)
    # The loadgen's clock started elapsed_s before it ended the run; it writes its results then.
    start_wall = path.stat().st_mtime - (result.elapsed_s or 0.0)
    samples = sampler.relative_to(start_wall)
    measured = windows(result.points, window_bounds(result.plan), result.timeline, samples)
    return {
        "windows": [asdict(w) for w in measured],
        "p99_drift": asdict(p99_drift(measured)),
        "memory_growth": asdict(memory_growth(measured, samples)),
        "processes": {str(pid): name for pid, name in sampler.names.items()},
        "server_identity": result.points[0].server.label if result.points else None,
        "client_bound_windows": [i for i, p in enumerate(result.points) if p.client_bound],
        "failures": result.failures,
        "load_avg_start": load_avg_start,
        "load_avg_end": load_avg_end,
        "loadgen_result": str(path),
        "loadgen_exit": loadgen_exit,
        "memory_samples": [asdict(s) for s in samples],
    }


# -- output -----------------------------------------------------------------------------------------
def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / MIB:.0f}"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(name: str, entry: dict[str, Any]) -> str:
    """A server's windows and verdicts, fitting 80 columns."""
    lines = [
        f"{name} ({entry.get('label')}, {entry.get('model')}): capacity {entry.get('capacity_rps')} req/s, "
        f"rate {entry.get('rate')} req/s, {entry.get('minutes')} min, {entry.get('status')}"
    ]
    if entry.get("status") != "ok":
        return "\n".join([*lines, f"  {entry.get('reason', '')}"])
    lines.append("  win  from-to min      n  p50 ms  p99 ms   req/s errors  RSS MiB  load1")
    for w in (Window(**row) for row in entry["windows"]):
        mark = "" if w.p99_reliable else "†"
        errors = ",".join(f"{k}:{v}" for k, v in w.errors.items()) or "0"
        lines.append(
            f"  {w.index:>3}  {w.start_s / 60:5.1f}-{w.end_s / 60:<5.1f} {w.n:>8} {_ms(w.p50_ms):>7} "
            f"{_ms(w.p99_ms) + mark:>7} {w.throughput_rps or 0:>7.1f} {errors:>6} "
            f"{_mib(w.max_rss_bytes):>8} {w.load_avg_mean if w.load_avg_mean is not None else '-':>6}"
        )
    drift, memory = Drift(**entry["p99_drift"]), MemoryGrowth(**entry["memory_growth"])
    lines.append(
        f"  p99 drift: last-first {_ms(drift.last_minus_first_ms)} ms (x{drift.last_over_first}), "
        f"largest window-to-window {_ms(drift.max_step_change_ms)} ms {drift.max_step_between}"
    )
    share = f"{memory.growth_fraction:+.1%}" if memory.growth_fraction is not None else "-"
    lines.append(
        f"  RSS: before load {_mib(memory.before_load_bytes)} MiB, first window "
        f"{_mib(memory.first_window_max_bytes)}, last {_mib(memory.last_window_max_bytes)} MiB ({share})"
    )
    return "\n".join(lines)


def _commit_and_hardware() -> tuple[str, dict[str, object]]:
    from imgbench.bench.suite import commit, hardware

    return commit(), hardware()


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _stop_children() -> None:
    """Whatever this process started and still runs (a sweep, a loadgen) after the stacks stopped
    their servers: ended by PID."""
    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.terminate()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def run(args: argparse.Namespace) -> int:
    if args.render is not None:
        from imgbench.bench.soak_report import markdown

        print(markdown(json.loads(args.render.read_text(encoding="utf-8"))), end="")
        return 0
    plan = make_plan(args)
    if args.dry_run:
        described = plan.describe() | {
            "rate": {c.server: args.rates.get(c.server, f"{args.fraction} x capacity") for c in plan.cases},
            "loadgen_args (rate 1 where searched)": {
                c.server: shlex.join(loadgen_args(c, plan, args, args.rates.get(c.server, 1.0)))
                for c in plan.cases
            },
        }
        print(json.dumps(described, indent=2))
        return 0
    started = datetime.now(UTC)
    sha, hw = _commit_and_hardware()
    record: dict[str, Any] = {
        "benchmark": "soak",
        "date": started.isoformat(timespec="seconds"),
        "commit": sha,
        "hardware": hw,
        "command": shlex.join(sys.argv),
        "plan": plan.describe(),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "servers": {},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out.resolve() / f"soak-{started:%Y-%m-%dT%H%M%S%z}.json"
    entries: dict[str, dict[str, Any]] = record["servers"]
    try:
        if plan.train:
            train(plan, args)
        for case in plan.cases:
            entries[case.server] = {"label": case.label, "stand_in": case.stand_in, "model": case.model}
        for case in plan.cases:  # capacities first: --end-by needs them done to share what is left
            entry = entries[case.server]
            if case.server in args.rates:
                rate = args.rates[case.server]
                entry.update(capacity_rps=None, rate=rate, capacity="skipped: --rate given")
                continue
            try:
                entry["capacity"] = search_capacity(case, plan, args)
            except ImgbenchError as exc:
                entry.update(status="failed", reason=f"SLO search: {str(exc).splitlines()[0]}")
                continue
            capacity = entry["capacity"]["max_rate"]
            entry["capacity_rps"] = round(capacity, 2) if capacity else None
            if not capacity:
                entry.update(status="failed", reason=f"no rate met p99 ≤ {args.slo_ms} ms with no errors")
                continue
            entry["rate"] = round(args.fraction * capacity, 2)
        todo = [c for c in plan.cases if "status" not in entries[c.server]]
        for index, case in enumerate(todo):
            entry = entries[case.server]
            current = plan
            if args.end_by:
                now = datetime.now(UTC)
                end = parse_end_by(args.end_by, now)
                minutes = minutes_until(end, now, len(todo) - index, args.minutes)
                count, window_s = split_evenly(minutes, args.window_minutes)
                current = replace(plan, minutes=minutes, windows=count, window_s=window_s)
            entry.update(minutes=current.minutes, windows_planned=current.windows, window_s=current.window_s)
            began = time.time()
            try:
                entry.update(soak(case, current, args, entry["rate"]))
                entry["status"] = "ok"
            except ImgbenchError as exc:
                entry.update(status="failed", reason=str(exc).splitlines()[0])
            entry["seconds"] = round(time.time() - began, 1)
            print(table(case.server, entry), flush=True)
    finally:
        _stop_children()
        record["ended"] = datetime.now(UTC).isoformat(timespec="seconds")
        atomic_write_text(out, json.dumps(record, indent=1, default=str) + "\n")
        print(f"soak results: {out}", flush=True)
    print("\n\n".join(table(name, entry) for name, entry in entries.items()))
    return 0 if entries and all(e.get("status") == "ok" for e in entries.values()) else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _raise_interrupt)  # so the stacks' exits stop the servers
    try:
        return run(get_args_parser().parse_args(argv))
    except ImgbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}): servers stopped, partial results written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
