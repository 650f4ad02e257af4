"""imgbench's load generator against an independent client, back to back, on the same server:
p50, p99, throughput and CPU per request at each concurrency, as ratios (a benchmark, not a test).

    .venv/loadgen/bin/python benchmarks/loadgen_vs_independent.py --backend triton \\
        --target 127.0.0.1:8001 --model pt_resnet18 --model-repository model-repository \\
        [--concurrency 1,4,16] [--seconds 10] [--out FILE.json]

The independent client is h2load (nghttp2, C, Debian's ``nghttp2-client``): it speaks HTTP/2, which
is all gRPC is on the wire, so one tool serves every protocol here (Triton, TF Serving, TorchServe,
the trivial health server). It sends the exact request bytes imgbench sends (``serialized_request``,
in a gRPC length-prefixed frame, ``content-type: application/grpc``), one stream per connection
(``-m 1``: closed loop, like imgbench's users), and logs every request's time, from which p50 and
p99 come. The same request is first sent once through imgbench's client and its answer checked, so
h2load's 200s are real answers. Triton's own ``perf_analyzer`` would be the natural choice for
Triton, but PyPI's ``perf-analyzer`` is a 2 KB placeholder without the binary, and h2load covers all
servers with one method. CPU per request: h2load's user + system time (``getrusage`` of the child)
over its requests; imgbench's, what it records itself (``client_cpu_ms_per_request``, all its
processes). Runs alternate per concurrency (imgbench, then h2load), each after its own warm-up.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from imgbench.load_results import load_load_result

ROOT = Path(__file__).resolve().parent.parent
HEALTH_PATH = "/grpc.health.v1.Health/Check"


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, add_help=add_help
    )
    parser.add_argument("--backend", required=True, help="triton, tfserving, torchserve or health.")
    parser.add_argument("--target", required=True, help="host:port of the server's gRPC endpoint.")
    parser.add_argument("--model", default="", help="Model name (not for health).")
    parser.add_argument("--model-repository", type=Path, default=None, help="Where the manifests are.")
    parser.add_argument("--concurrency", default="1,4,16", help="Closed-loop concurrencies (default 1,4,16).")
    parser.add_argument("--seconds", type=float, default=10.0, help="Measured seconds per run (default 10).")
    parser.add_argument("--warmup", type=float, default=2.0, help="Warm-up seconds per run (default 2).")
    parser.add_argument("--label", default="", help="How the table names the server (default: backend).")
    parser.add_argument("--out", type=Path, default=None, help="JSON results (appended to a list).")
    return parser


def request_bytes(args: argparse.Namespace) -> tuple[str, bytes]:
    """The inference path and the request imgbench sends, checked once through imgbench's client."""
    if args.backend == "health":
        from grpc_health.v1 import health_pb2

        return HEALTH_PATH, health_pb2.HealthCheckRequest(service="").SerializeToString()
    from imgbench.clients import make_client

    with make_client(args.backend, args.target, args.model_repository) as client:
        manifest = client.manifest(args.model)
        shape = [1, *(d for d in manifest.input.shape[1:])]
        batch = np.random.default_rng(0).standard_normal(shape).astype(manifest.input.dtype)
        request = client.serialized_request(args.model, batch)
        logits = client.answer_of(args.model, client.send_serialized(args.model, request))
        if logits.shape[0] != 1:
            raise SystemExit(f"{args.backend} answered logits of shape {logits.shape} for one image")
        return client.infer_path, request


def run_imgbench(args: argparse.Namespace, users: int, workdir: Path) -> dict[str, Any]:
    run_id = f"imgbench-c{users}"
    argv = [
        sys.executable, "-m", "loadgen", "--headless", "--only-summary", "--backend", args.backend,
        "--target", args.target, "-u", str(users), "--step-duration", str(args.seconds + args.warmup),
        "--warmup", str(args.warmup), "--results-dir", str(workdir), "--run-id", run_id,
        "--metrics-port", "0",
    ]  # fmt: skip
    if args.backend != "health":
        argv += ["--model", args.model, "--model-repository", str(args.model_repository)]
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, check=False)
    path = workdir / f"{run_id}.json"
    if not path.exists():
        raise SystemExit(f"imgbench at concurrency {users} wrote no results: {done.stderr[-2000:]}")
    point = load_load_result(path).points[0]
    return {
        "p50_ms": point.p50_ms,
        "p99_ms": point.p99_ms,
        "rps": point.throughput_rps,
        "cpu_us_per_request": (point.client_cpu_ms_per_request or 0) * 1000,
        "client_bound": point.client_bound,
        "processes": point.client.processes if point.client else None,
        "errors": point.errors,
        "incorrect": point.incorrect,
    }


def run_h2load(
    args: argparse.Namespace, users: int, path: str, request: bytes, workdir: Path
) -> dict[str, Any]:
    frame = workdir / "request.grpc"
    frame.write_bytes(b"\x00" + struct.pack(">I", len(request)) + request)
    log = workdir / f"h2load-c{users}.log"
    argv = [
        "h2load", "-c", str(users), "-m", "1", "-D", f"{args.seconds:g}",
        "--warm-up-time", f"{args.warmup:g}",
        "-d", str(frame), "-H", "content-type: application/grpc", "-H", "te: trailers",
        "--log-file", str(log), f"http://{args.target}{path}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    summary = re.search(r"requests: (\d+) total.*?(\d+) succeeded, (\d+) failed", done.stdout)
    if done.returncode != 0 or summary is None:
        raise SystemExit(f"h2load at concurrency {users} failed: {done.stdout[-1500:]} {done.stderr[-500:]}")
    latencies_us = np.array([int(line.split("\t")[2]) for line in log.read_text().splitlines() if line])
    succeeded = int(summary.group(2))
    return {
        "p50_ms": round(float(np.percentile(latencies_us, 50)) / 1000, 3),
        "p99_ms": round(float(np.percentile(latencies_us, 99)) / 1000, 3),
        "rps": round(len(latencies_us) / args.seconds, 1),
        "cpu_us_per_request": round(cpu_s * 1e6 / max(1, int(summary.group(1))), 1),
        "failed": int(summary.group(3)),
        "succeeded": succeeded,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def main(args: argparse.Namespace) -> list[dict[str, Any]]:
    if shutil.which("h2load") is None:
        raise SystemExit("h2load not found: apt-get install nghttp2-client")
    path, request = request_bytes(args)
    rows = []
    with tempfile.TemporaryDirectory(prefix="lg-vs-") as tmp:
        for users in (int(c) for c in args.concurrency.split(",")):
            load = os.getloadavg()[0]
            ours = run_imgbench(args, users, Path(tmp))
            theirs = run_h2load(args, users, path, request, Path(tmp))
            row = {
                "server": args.label or args.backend, "concurrency": users,
                "imgbench": ours, "h2load": theirs,
                "p50_ratio": ratio(ours["p50_ms"], theirs["p50_ms"]),
                "p99_ratio": ratio(ours["p99_ms"], theirs["p99_ms"]),
                "throughput_ratio": ratio(ours["rps"], theirs["rps"]),
                "cpu_ratio": ratio(ours["cpu_us_per_request"], theirs["cpu_us_per_request"]),
                "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
            }  # fmt: skip
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        previous = json.loads(args.out.read_text()) if args.out.exists() else []
        record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps([*previous, record], indent=2) + "\n")
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table docs/benchmarks.md shows."""
    lines = [
        "| server | c | imgbench p50 / p99 ms, req/s | h2load p50 / p99 ms, req/s | p50 ratio | p99 ratio "
        "| throughput ratio | CPU µs/req imgbench / h2load | client_bound | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        o, t = r["imgbench"], r["h2load"]
        lines.append(
            f"| {r['server']} | {r['concurrency']} | {o['p50_ms']} / {o['p99_ms']}, {o['rps']:.0f} "
            f"| {t['p50_ms']} / {t['p99_ms']}, {t['rps']:.0f} | {r['p50_ratio']} | {r['p99_ratio']} "
            f"| {r['throughput_ratio']} | {o['cpu_us_per_request']:.0f} / {t['cpu_us_per_request']:.0f} "
            f"| {o['client_bound']} | {r['load_average'][0]}-{r['load_average'][1]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(main(get_args_parser().parse_args())))
