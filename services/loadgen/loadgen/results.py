"""Results of one run, as an ``imgbench.load_results.LoadResult``: a point per load step (n,
percentiles, throughput, errors, incorrect answers) for the measured window only, the run's
configuration, the hardware, and what happened over time (error bursts and whether the server
recovered). Written as ``<run_id>.json`` (the schema) and ``<run_id>.csv`` (a flat copy of the points).
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from imgbench.atomic import atomic_write_text
from imgbench.load_results import LoadPoint, LoadResult, ServerIdentity, ServerTimings, write_load_result
from loadgen.client_cpu import ClientFacts, verdict
from loadgen.plan import LoadPlan
from loadgen.recorder import Recorder, Tally

PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
CURVE_PERCENTILES = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0)
"""The latency-by-percentile curve kept with each point (the report plots it)."""
CSV_FIELDS = [
    "run_id", "backend", "server", "model", "batch_size", "mode", "arrivals", "point", "users", "target_rate",
    "n", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms", "throughput_rps",
    "images_per_second", "requests", "errors", "error_codes", "incorrect", "window_s", "slo_ms",
    "p99_within_slo", "deployment", "cpu", "cores", "hostname", "client_cpu_ms_per_request", "client_bound",
    "reference_model", "disagreements",
]  # fmt: skip


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("locust", "grpcio", "hdrhistogram", "prometheus-client", "tritonclient", "imgbench"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "cpu_affinity": len(psutil.Process().cpu_affinity() or []),
        "memory_bytes": psutil.virtual_memory().total,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }


def summarize(tally: Tally, window_s: float) -> dict[str, Any]:
    h = tally.histogram
    n = h.get_total_count()
    row: dict[str, Any] = {"n": n}
    for name, q in PERCENTILES.items():
        row[f"{name}_ms"] = round(h.get_value_at_percentile(q) / 1000, 3) if n else None
    row["max_ms"] = round(h.get_max_value() / 1000, 3) if n else None
    row["percentiles"] = (
        {f"{q:g}": round(h.get_value_at_percentile(q) / 1000, 3) for q in CURVE_PERCENTILES} if n else {}
    )
    row["mean_ms"] = round(tally.latency_sum_s / n * 1000, 3) if n else None
    row["throughput_rps"] = round(n / window_s, 3) if window_s > 0 else None
    row["images_per_second"] = round(tally.images / window_s, 3) if window_s > 0 else None
    row["requests"] = tally.requests
    row["errors"] = tally.error_count
    row["error_codes"] = dict(sorted(tally.errors.items()))
    row["incorrect"] = tally.incorrect
    row["disagreements"] = tally.disagreements
    row["window_s"] = round(window_s, 3)
    return row


def error_bursts(timeline: dict[int, Any]) -> list[dict[str, Any]]:
    """Consecutive seconds with errors, each with its codes and whether answers came back after it."""
    bursts: list[dict[str, Any]] = []
    for second in sorted(timeline):
        counts = timeline[second]
        errors = {code: n for code, n in counts.items() if code not in ("ok", "incorrect")}
        if not errors:
            continue
        if bursts and bursts[-1]["to_s"] == second:
            burst = bursts[-1]
        else:
            burst = {"from_s": second, "to_s": second, "errors": 0, "codes": {}}
            bursts.append(burst)
        burst["to_s"] = second + 1
        burst["errors"] += sum(errors.values())
        for code, n in errors.items():
            burst["codes"][code] = burst["codes"].get(code, 0) + n
    for burst in bursts:
        burst["answers_after"] = sum(
            counts.get("ok", 0) + counts.get("incorrect", 0)
            for s, counts in timeline.items()
            if s >= burst["to_s"]
        )
        burst["recovered"] = burst["answers_after"] > 0
    return bursts


def accounting(timeline: dict[int, Any], issued: int) -> dict[str, int]:
    """Every issued request ends as an answer or an error: ``lost`` counts those that did neither."""
    answered = sum(c.get("ok", 0) + c.get("incorrect", 0) for c in timeline.values())
    errors = sum(n for c in timeline.values() for code, n in c.items() if code not in ("ok", "incorrect"))
    return {"issued": issued, "answered": answered, "errors": errors, "lost": issued - answered - errors}


def deployment() -> str:
    """Where the run happened: ``IMGBENCH_DEPLOYMENT`` (compose and Kubernetes set it), else native."""
    return os.environ.get("IMGBENCH_DEPLOYMENT", "native")


def server_identity(config: dict[str, Any], preflight: dict[str, Any]) -> ServerIdentity:
    """The server as the preflight heard it identify itself."""
    if preflight.get("server_identity"):
        return ServerIdentity.model_validate(preflight["server_identity"])
    name = str(preflight.get("server", config["backend"]))
    return ServerIdentity(backend=config["backend"], implementation=name, stand_in="stand-in" in name.lower())


def build(
    *,
    run_id: str,
    config: dict[str, Any],
    plan: LoadPlan,
    recorder: Recorder,
    elapsed_s: float,
    preflight: dict[str, Any],
    stop_reason: str,
    server_timings: Mapping[int, ServerTimings] | None = None,
    client: ClientFacts | None = None,
) -> LoadResult:
    """``server_timings``: the server's own view of each step (by index), where it could be read;
    ``client``: the generator's own CPU and lateness per step, for each point's ``client_bound``."""
    hw = hardware()
    server = server_identity(config, preflight)
    points = []
    for step in plan.steps:
        start, end = plan.measured_window(step)
        window = max(0.0, min(end, elapsed_s) - start)
        tally = recorder.points.get(step.index, Tally())
        row = {
            "run_id": run_id,
            "backend": config["backend"],
            "server": server,
            "model": config["model"] or config["backend"],
            "batch_size": config["batch_size"],
            "mode": plan.mode,
            "arrivals": config["arrivals"] if plan.mode == "open" else "",
            "point": step.label,
            "users": step.users,
            "target_rate": step.rate,
            "deployment": deployment(),
            "seed": config.get("seed"),
            "server_timings": (server_timings or {}).get(step.index),
            "server_config": preflight.get("server_config"),
            **summarize(tally, window),
            "reference_model": config.get("reference_model") or None,
            "slo_ms": round(config["slo"] * 1000, 3),
        }
        if row["reference_model"] is None:
            row["disagreements"] = None
        row["p99_within_slo"] = (
            row["p99_ms"] is not None and row["p99_ms"] <= row["slo_ms"] and row["errors"] == 0
        )
        row.update(cpu=hw["cpu"], cores=hw["cores"], hostname=hw["hostname"])
        load, cpu_ms, bound = verdict(
            client or ClientFacts(),
            requests=tally.requests,
            window_s=window,
            mode=plan.mode,
            step=step.index,
            mean_latency_ms=row["mean_ms"],
        )
        row.update(client=load, client_cpu_ms_per_request=cpu_ms, client_bound=bound)
        points.append(LoadPoint.model_validate(row))
    timeline = {s: dict(c) for s, c in sorted(recorder.timeline.items())}
    bursts = error_bursts(timeline)
    return LoadResult(
        run_id=run_id,
        stop_reason=stop_reason,
        elapsed_s=round(elapsed_s, 3),
        config=config,
        plan=plan.describe(),
        preflight=preflight,
        hardware=hw,
        points=points,
        faults=accounting(timeline, recorder.issued) | {"error_bursts": bursts},
        failures=[
            f"{b['errors']} errors {b['codes']} from {b['from_s']} s to {b['to_s']} s"
            f"{'' if b['recovered'] else ', not recovered by the end of the run'}"
            for b in bursts
        ],
        timeline={str(s): c for s, c in timeline.items()},
    )


def client_summary(point: LoadPoint) -> str:
    """The point's ``client_bound`` verdict in a few words, for terminal lines and tables."""
    if point.client_bound is None or point.client is None:
        return "client not measured"
    c = point.client
    per_request = point.client_cpu_ms_per_request
    cost = f"{per_request * 1000:.0f} µs CPU/req, " if per_request is not None else ""
    late = f", {c.late_share:.1%} late sends" if c.late_share is not None else ""
    head = "CLIENT-BOUND" if point.client_bound else "client ok"
    return f"{head} ({cost}busiest process {c.max_process_utilisation:.0%} of a core{late})"


def csv_row(point: LoadPoint) -> dict[str, Any]:
    row = point.model_dump()
    row.update(server=point.server.label, error_codes=json.dumps(point.error_codes))
    return row


def write(results: LoadResult, results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_load_result(results_dir / f"{results.run_id}.json", results)
    csv_path = results_dir / f"{results.run_id}.csv"
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for point in results.points:
        writer.writerow(csv_row(point))
    atomic_write_text(csv_path, buffer.getvalue())
    return json_path, csv_path
