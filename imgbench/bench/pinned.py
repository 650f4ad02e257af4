"""Issue 12's serving benchmarks (not tests), with the client and the server pinned to separate cores:

    .venv/core/bin/python -m imgbench.bench.pinned --model-repository REPO --dataset DIGITS \\
        --seconds 5 --out runs/bench/results/pinned [--history benchmarks/history.jsonl]

- ``added``: each server's added p50 at concurrency 1 (batch 1, one request at a time) over the same
  runtime in-process, the server and the in-process run on ``--server-core``, the client on
  ``--client-core`` (``os.sched_setaffinity``; children inherit it). Beside it the server's own view of
  the same window (``imgbench.server_view``: Triton's statistics API, the stand-in's latency histogram,
  TorchServe's QueueTime/HandlerTime gauges), so the added time splits into inside the server (queue,
  the server's own work around the runtime) and outside it (gRPC, protobuf, the client). Goals: ≤ 1 ms
  for Triton's python backend and the stand-in, ≤ 3 ms for TorchServe.
- ``tuned``: each server's throughput at a p99 SLO, its default configuration against the best that
  `imgbench tune` finds on a small grid (the loadgen on the client core, each probe's server on the
  server core).
- ``profile``: where TorchServe's added p50 goes (``imgbench.bench.torchserve_profile``: its frontend
  log's backend time, py-spy on its Python worker), when TorchServe is among ``--servers``.

Every figure is written with the 1-minute load average at its start and end: on a shared machine the
figures are noisy. A benchmark, so nothing is asserted. `make bench` runs it (``imgbench.bench.suite``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from imgbench import servers
from imgbench.bench.serving import in_process
from imgbench.catalog import CPU_DEFAULT_ARCHITECTURE
from imgbench.clients import make_client
from imgbench.clients.images import load_eval_batch
from imgbench.errors import ImgbenchError
from imgbench.load_results import ServerTimings
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository
from imgbench.server_view import make_sampler
from imgbench.stack import Stack
from imgbench.stack.model_servers import SERVER_CONFIG_OPTION
from imgbench.stack.ports import free_port_map
from imgbench.tune.configs import write_ready_configs

log = logging.getLogger("imgbench.bench.pinned")
GOAL_ADDED_P50_MS = {"triton": 1.0, "tfserving": 1.0, "torchserve": 3.0}
# Small grids (the default is always measured first): batching delay and batch size, where a closed
# loop of a few users gains or loses most.
TUNE_SPACE: dict[str, dict[str, list[int | float]]] = {
    "triton": {"max_queue_delay_us": [0, 500]},
    "tfserving": {"batch_timeout_micros": [0, 500]},
    "torchserve": {"max_batch_delay_ms": [0, 1]},
}
BENCHES = ("added", "tuned", "profile")
# Each server's batching wait: a lone request waits up to this long for company (the default's cost
# at concurrency 1). "added" measures the default and, through a ready config, this knob at 0.
DELAY_KNOB = {
    "triton": "max_queue_delay_us",
    "tfserving": "batch_timeout_micros",
    "torchserve": "max_batch_delay_ms",
}


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-repository", type=Path, required=True, help="trained model repository")
    parser.add_argument(
        "--dataset", type=Path, default=None, help="ImageFolder root (default: the manifest's)"
    )
    parser.add_argument(
        "--architecture", default=CPU_DEFAULT_ARCHITECTURE, help=f"(default: {CPU_DEFAULT_ARCHITECTURE})"
    )
    parser.add_argument("--servers", default=",".join(servers.SERVERS), help="(default: every server)")
    parser.add_argument("--only", nargs="+", choices=BENCHES, default=list(BENCHES), help="(default: all)")
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement (default: 5)")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="excluded (default: 3)")
    parser.add_argument("--server-core", type=int, default=1, help="(default: 1)")
    parser.add_argument("--client-core", type=int, default=0, help="(default: 0)")
    parser.add_argument("--slo-ms", type=float, default=100.0, help="tuned: p99 SLO (default: 100)")
    parser.add_argument("--users", type=int, default=8, help="tuned: closed-loop users (default: 8)")
    parser.add_argument(
        "--run-dir", type=Path, default=Path("runs/bench-pinned"), help="(default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="(default: %(default)s)")
    parser.add_argument("--history", type=Path, default=None, help="append a suite record here (default: no)")
    return parser


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _pin(core: int) -> None:
    """This thread (and every process or thread it starts from now on) on ``core`` only."""
    if core not in os.sched_getaffinity(0) and len(os.sched_getaffinity(0)) > 1:
        raise ImgbenchError(
            f"core {core} is not available; this process may use {sorted(os.sched_getaffinity(0))}"
        )
    os.sched_setaffinity(0, {core})


def _all_cores() -> None:
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))


def sequential(client: Any, model: str, images: np.ndarray, seconds: float, warmup: float) -> dict[str, Any]:
    """Concurrency 1: one request at a time for ``seconds`` after ``warmup``; HdrHistogram in µs."""
    histogram = HdrHistogram(1, 60_000_000, 3)
    errors, row = 0, 0
    start_measuring = time.perf_counter() + warmup
    stop = start_measuring + seconds
    while (now := time.perf_counter()) < stop:
        try:
            client.infer(model, images[row % len(images)][None])
            ok = True
        except Exception:
            ok = False
        row += 1
        if now >= start_measuring:
            if ok:
                histogram.record_value(max(1, round((time.perf_counter() - now) * 1e6)))
            else:
                errors += 1
    return {
        "n": histogram.get_total_count(),
        "p50": histogram.get_value_at_percentile(50) / 1000,
        "p99": histogram.get_value_at_percentile(99) / 1000,
        "mean": histogram.get_mean_value() / 1000,
        "errors": errors,
    }


def _server_view(server: str, model: str, client: Any, ports: dict[str, int]) -> tuple[Any, Any] | None:
    spec = servers.get_server(server)
    if spec.timings is None:
        return None
    url = f"http://127.0.0.1:{ports[spec.metrics_port]}{spec.metrics_path}"
    return spec.timings, make_sampler(spec.timings, model, client=client, metrics_url=url)


def added_latency(args: argparse.Namespace, server: str, zero_delay: bool = False) -> dict[str, Any]:
    """Served p50 at concurrency 1 vs the same runtime in-process, server and client on their own cores;
    ``zero_delay``: the server started with a ready config whose batching wait is 0."""
    repository = ModelRepository(args.model_repository.resolve())
    spec = servers.get_server(server)
    if spec.baseline is None:
        raise ImgbenchError(f"server {server!r} has no in-process baseline to compare with")
    model = servers.default_model(server, args.architecture)
    manifest = load_manifest(repository.manifest_path(model))
    images, _ = load_eval_batch(manifest, args.dataset or Path(manifest.dataset.path), limit=256)
    load_start = _load()
    ports = free_port_map()
    run_dir = args.run_dir / f"added-{server}{'-delay0' if zero_delay else ''}"
    options = None
    config: dict[str, int | float] = {}
    if zero_delay:
        config = {DELAY_KNOB[server]: 0}
        source = repository.triton_config(model).read_text() if server == "triton" else ""
        write_ready_configs(server, model, config, run_dir / "server-config", source)
        options = {SERVER_CONFIG_OPTION: str((run_dir / "server-config").resolve())}
    _pin(args.server_core)  # the server and the in-process run inherit the server core
    with Stack(run_dir / "stack", ports=ports, model_repository=repository.root, options=options) as stack:
        stack.up([server])
        local = in_process(
            spec.baseline.kind,
            spec.venv,
            spec.baseline.artifact(repository, model, manifest.version),
            images,
            args.seconds,
            batch_sizes="1",
        )
        _pin(args.client_core)
        client = make_client(server, f"127.0.0.1:{ports[server]['grpc']}", repository)
        view = _server_view(server, model, client, ports[server])
        samples: list[Any] = []
        stop_sampling = threading.Event()
        sampler_thread = None
        timings: ServerTimings | None = None
        try:
            sequential(client, model, images, 0.0, args.warmup_seconds)
            before = view[1].snapshot() if view else None
            if view is not None and view[0].kind == "prometheus_gauges":

                def sample() -> None:
                    while not stop_sampling.wait(0.5):
                        samples.append(view[1].snapshot())

                sampler_thread = threading.Thread(target=sample, daemon=True)
                sampler_thread.start()
            served = sequential(client, model, images, args.seconds, 0.0)
            stop_sampling.set()
            if sampler_thread is not None:
                sampler_thread.join()
            if view is not None and before is not None:
                timings = view[1].timings(before, view[1].snapshot(), samples)
        finally:
            client.close()
            _pin(args.server_core)
    _all_cores()
    lat = local["latency_batch1_ms"]
    added = served["p50"] - lat["p50"]
    inside = timings.total_ms if timings is not None else None
    return {
        "server": server,
        "model": model,
        "runtime": spec.baseline.runtime,
        "config": config or "default",
        "cores": {"server": args.server_core, "client": args.client_core},
        "in_process_ms": lat,
        "served_concurrency_1_ms": served,
        "added_p50_ms": round(added, 3),
        "goal_added_p50_ms": GOAL_ADDED_P50_MS.get(server),
        "meets_goal": added <= GOAL_ADDED_P50_MS.get(server, float("inf")),
        "server_timings": timings.model_dump(exclude_none=True) if timings is not None else None,
        # Mean per request: inside the server beyond the runtime, and outside it (gRPC, protobuf, client).
        "breakdown_mean_ms": {
            "in_process_mean": lat.get("mean"),
            "server_total": inside,
            "outside_server": round(served["mean"] - inside, 3) if inside is not None else None,
            "inside_server_beyond_runtime": round(inside - lat["mean"], 3)
            if inside is not None and lat.get("mean") is not None
            else None,
        },
        "load_average_1m": {"start": load_start, "end": _load()},
    }


def tuned_vs_default(args: argparse.Namespace, server: str) -> dict[str, Any]:
    """`imgbench tune` on a small grid: the default's throughput at the SLO vs the best's."""
    from imgbench.tune.runner import TuneSettings, run_tune

    model = servers.default_model(server, args.architecture)
    load_start = _load()
    _pin(args.server_core)  # each probe's server inherits it; its load generator is pinned apart
    try:
        settings = TuneSettings(
            server=server,
            model=model,
            model_repository=args.model_repository.resolve(),
            run_dir=(args.run_dir / f"tune-{server}").resolve(),
            slo_ms=args.slo_ms,
            budget_s=600.0,
            strategy="grid",
            space=TUNE_SPACE.get(server),
            users=args.users,
            seconds=args.seconds,
            warmup_s=args.warmup_seconds,
            dataset=args.dataset.resolve() if args.dataset else None,
            loadgen_cpus=frozenset({args.client_core}),
        )
        path, result = run_tune(settings)
    finally:
        _all_cores()
    default, best = result.default, result.best
    ratio = (
        best.images_per_second / default.images_per_second
        if best is not None and default is not None and default.passed and default.images_per_second
        else None
    )

    def probe(p: Any) -> dict[str, Any] | None:
        if p is None:
            return None
        return {
            "config": p.config,
            "images_per_s": p.images_per_second,
            "p99_ms": p.p99_ms,
            "passed": p.passed,
        }

    return {
        "server": server,
        "model": model,
        "slo_ms": args.slo_ms,
        "users": args.users,
        "space": TUNE_SPACE.get(server),
        "default": probe(default),
        "best": probe(best),
        "tuned_over_default": round(ratio, 3) if ratio is not None else None,
        "probes": [probe(p) | {"rejected": p.rejected} for p in result.probes],  # type: ignore[operator]
        "verdict": result.verdict,
        "results_file": str(path),
        "load_average_1m": {"start": load_start, "end": _load()},
    }


def _ms(value: float | None) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "–"


def _loads(entry: dict[str, Any]) -> str:
    load = entry.get("load_average_1m") or {}
    return f"{load.get('start', '–')} / {load.get('end', '–')}"


def markdown(report: dict[str, Any]) -> str:
    """The two tables of a report, as docs/benchmarks.md shows them."""
    rows = [
        "| server (runtime) | config | in-process p50 ms | served c=1 p50 / p99 ms (n) | added p50 ms "
        "| goal | server's own view per request, ms | load avg 1 min start / end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in report.get("added", {}).items():
        if r.get("status") == "failed":
            rows.append(f"| {key} | failed: {r['reason'][:80]} | | | | | | |")
            continue
        served, timings = r["served_concurrency_1_ms"], r.get("server_timings") or {}
        view = ", ".join(
            f"{name.removesuffix('_ms')} {value:.2f}"
            for name, value in timings.items()
            if name.endswith("_ms") and isinstance(value, int | float)
        )
        config = (
            "default" if r["config"] == "default" else ", ".join(f"{k}={v}" for k, v in r["config"].items())
        )
        rows.append(
            f"| {r['server']} ({r['runtime']}) | {config} | {_ms(r['in_process_ms']['p50'])} | "
            f"{_ms(served['p50'])} / {_ms(served['p99'])} ({served['n']}) | {r['added_p50_ms']:+.2f} | "
            f"≤ {r['goal_added_p50_ms']:g} {'met' if r['meets_goal'] else 'not met'} | {view or '–'} | "
            f"{_loads(r)} |"
        )
    rows += [
        "",
        "| server | SLO p99 ms, users | default: config, img/s, p99 ms | best: config, img/s, p99 ms | "
        "tuned / default | load avg 1 min start / end |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in report.get("tuned", {}).items():
        if r.get("status") == "failed":
            rows.append(f"| {key} | failed: {r['reason'][:80]} | | | | |")
            continue

        space = r.get("space") or {}

        def cell(probe: dict[str, Any] | None, space: dict[str, Any] = space) -> str:
            if probe is None:
                return "none met the SLO"
            # The knobs the grid varied; the others kept their defaults.
            config = ", ".join(f"{k}={v}" for k, v in probe["config"].items() if not space or k in space)
            return f"{config}; {_ms(probe['images_per_s'])}, {_ms(probe['p99_ms'])}"

        ratio = r["tuned_over_default"]
        rows.append(
            f"| {r['server']} | {r['slo_ms']:g}, {r['users']} | {cell(r['default'])} | {cell(r['best'])} | "
            f"{f'{ratio:.2f}' if ratio is not None else '–'} | {_loads(r)} |"
        )
    return "\n".join(rows)


def main(args: argparse.Namespace) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = args.servers.split(",")
    for name in names:
        servers.get_server(name)
    report: dict[str, Any] = {
        "benchmark": "pinned serving (issue 12)",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "added": {},
        "tuned": {},
        "profile": {},
    }
    cases: list[tuple[str, str, Any]] = []
    if "added" in args.only:
        for name in names:
            cases += [("added", name, lambda n=name: added_latency(args, n))]
            cases += [("added", f"{name}:delay0", lambda n=name: added_latency(args, n, zero_delay=True))]
    if "tuned" in args.only:
        cases += [("tuned", name, lambda n=name: tuned_vs_default(args, n)) for name in names]
    if "profile" in args.only and "torchserve" in names:
        from imgbench.bench.torchserve_profile import profile

        # A longer window than the others: py-spy needs some thousand samples of the worker.
        window = argparse.Namespace(**{**vars(args), "seconds": max(args.seconds, 15.0)})
        cases += [("profile", "torchserve", lambda: profile(window))]
    for bench, key, run in cases:
        log.info("%s: %s", bench, key)
        try:
            report[bench][key] = run()
        except Exception as exc:  # a benchmark records a failure and goes on
            log.exception("%s %s failed", bench, key)
            report[bench][key] = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:600]}
        finally:
            _all_cores()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"pinned-{report['created_at'].replace(':', '')}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(markdown(report))
    print(f"results: {path}")
    if args.history is not None:
        from imgbench.bench.suite import commit, hardware

        failed = [k for bench in BENCHES for k, v in report[bench].items() if v.get("status") == "failed"]
        status = "ok" if not failed else f"failed: {', '.join(failed)}"
        record = {
            "date": report["created_at"],
            "commit": commit(),
            "hardware": hardware(),
            "benchmarks": {"pinned": {"status": status, "results": [report]}},
        }
        args.history.parent.mkdir(parents=True, exist_ok=True)
        with args.history.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=str) + "\n")
        print(f"appended to {args.history}")
    return report


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--markdown":  # the tables of a results file
        print(markdown(json.loads(Path(sys.argv[2]).read_text())))
    else:
        main(get_args_parser().parse_args())
