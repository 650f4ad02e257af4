"""Where TorchServe's added latency at concurrency 1 goes (issue 12; a benchmark, nothing asserted):

    .venv/core/bin/python -m imgbench.bench.torchserve_profile --model-repository REPO --dataset DIGITS \\
        --seconds 20 --out benchmarks/results

TorchServe on ``--server-core`` with its batching wait at 0 (a ready config, like ``pinned``'s
"added"), the client on ``--client-core``, one request at a time, and four views of the same window:

- the client's latency (HdrHistogram), and the same TorchScript in-process (the runtime alone);
- the frontend's own per-request log (``ts_log.log``, ``GRPCJob``: the job's wait in the frontend
  queue and its "backend time", frontend → Python worker over its Unix socket → handler → back);
- the handler's time as the worker measures it (``model_metrics.log``: ``HandlerTime``, around our
  handler's ``handle`` call);
- py-spy (``record --idle --format raw``) on the Python worker: the share of its wall time in our
  handler's decode, forward and encode, in TorchServe's message framing and metrics, and waiting on
  its socket for the next request; ``jstack`` thread dumps of the frontend show which of its threads
  are busy.

So the client p50 splits into: the model, our handler around it, the worker's framing (backend time
minus handler time), and the frontend plus gRPC plus the client (client latency minus backend
time). The 1-minute load average is recorded at start and end.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from imgbench import servers
from imgbench.bench.pinned import _all_cores, _load, _pin, sequential
from imgbench.bench.serving import in_process
from imgbench.catalog import CPU_DEFAULT_ARCHITECTURE
from imgbench.clients import make_client
from imgbench.clients.images import load_eval_batch
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository, venv_bin
from imgbench.stack import Stack
from imgbench.stack.model_servers import SERVER_CONFIG_OPTION
from imgbench.stack.ports import free_port_map
from imgbench.tune.configs import write_ready_configs

log = logging.getLogger("imgbench.bench.torchserve_profile")
GRPC_JOB = re.compile(r"^(\S+ \S+) .*GRPCJob - Waiting time ns: (\d+), Backend time ns: (\d+)")
HANDLER_TIME = re.compile(r"^(\S+ \S+) .*HandlerTime\.Milliseconds:([\d.]+)")
# Where a py-spy sample of the worker is, by the innermost frame that names one of these (first match
# from the innermost frame outwards).
CATEGORIES = (
    ("handler: model forward", ("forward", "_call_impl", "torch/jit")),
    ("handler: decode (.npy)", ("decode_request",)),
    ("handler: encode (.npy)", ("encode_logits",)),
    ("handler: other", ("(handler.py:",)),
    ("worker: metrics and logging", ("ts/metrics", "logging/__init__")),
    ("worker: waiting for a request (socket recv)", ("recv", "_retrieve_buffer", "retrieve_msg")),
    (
        "worker: framing the response (socket send)",
        ("sendall", "create_predict_response", "send_intermediate"),
    ),
)


def _percentiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    array = np.asarray(values)
    return {
        "n": len(values),
        "p50": round(float(np.percentile(array, 50)), 3),
        "p99": round(float(np.percentile(array, 99)), 3),
        "mean": round(float(array.mean()), 3),
    }


def _since(lines: list[str], pattern: re.Pattern[str], start: str) -> list[re.Match[str]]:
    return [m for line in lines if (m := pattern.match(line)) and m.group(1).replace("T", " ") >= start]


def _worker(stack_dir: Path) -> psutil.Process | None:
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "model_service_worker" in cmdline and str(stack_dir.resolve()) in cmdline:
            return process
    candidates = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "model_service_worker" in " ".join(p.info["cmdline"] or [])
    ]
    return max(candidates, key=lambda p: p.create_time(), default=None)


def classify(raw: str) -> dict[str, float]:
    """py-spy's raw (collapsed) stacks as shares of the samples per category."""
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        category = "worker: other (TorchServe's service loop, Python)"
        for frame in reversed(frames):
            found = next((name for name, keys in CATEGORIES if any(k in frame for k in keys)), None)
            if found:
                category = found
                break
        counts[category] += int(count)
    return {name: round(n / total, 4) for name, n in counts.most_common()} if total else {}


def profile(args: argparse.Namespace) -> dict[str, Any]:
    server = "torchserve"
    repository = ModelRepository(args.model_repository.resolve())
    spec = servers.get_server(server)
    model = servers.default_model(server, args.architecture)
    manifest = load_manifest(repository.manifest_path(model))
    images, _ = load_eval_batch(manifest, args.dataset or Path(manifest.dataset.path), limit=256)
    run_dir = (args.run_dir / "torchserve-profile").resolve()
    shutil.rmtree(run_dir, ignore_errors=True)
    write_ready_configs(server, model, {"max_batch_delay_ms": 0}, run_dir / "server-config")
    options = {SERVER_CONFIG_OPTION: str(run_dir / "server-config")}
    ports = free_port_map()
    load_start = _load()
    _pin(args.server_core)
    stack_dir = run_dir / "stack"
    with Stack(stack_dir, ports=ports, model_repository=repository.root, options=options) as stack:
        stack.up([server])
        assert spec.baseline is not None
        local = in_process(
            spec.baseline.kind,
            spec.venv,
            spec.baseline.artifact(repository, model, manifest.version),
            images,
            min(args.seconds, 10.0),
            batch_sizes="1",
        )
        worker = _worker(stack_dir)
        _pin(args.client_core)
        client = make_client(server, f"127.0.0.1:{ports[server]['grpc']}", repository)
        try:
            sequential(client, model, images, 0.0, args.warmup_seconds)
            started = datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            spy = None
            raw_path = run_dir / "worker.pyspy.txt"
            py_spy = venv_bin("core") / "py-spy"
            if worker is not None and py_spy.exists():
                spy = subprocess.Popen(
                    [str(py_spy), "record", "--idle", "--format", "raw", "--rate", "250",
                     "--duration", f"{args.seconds:g}", "--pid", str(worker.pid), "-o", str(raw_path)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                )  # fmt: skip
            dumps = []
            java = next((p for p in psutil.process_iter(["name"]) if p.info["name"] == "java"), None)
            served = sequential(client, model, images, args.seconds, 0.0)
            if java is not None and shutil.which("jstack"):
                for _ in range(3):
                    done = subprocess.run(["jstack", str(java.pid)], capture_output=True, text=True)
                    dumps.append(done.stdout)
            if spy is not None:
                spy.wait(timeout=60)
        finally:
            client.close()
            _pin(args.server_core)
        logs = stack_dir / "torchserve" / "logs"
        ts_log = (
            (logs / "ts_log.log").read_text(errors="replace").splitlines()
            if (logs / "ts_log.log").exists()
            else []
        )
        metrics_log = (
            (logs / "model_metrics.log").read_text(errors="replace").splitlines()
            if (logs / "model_metrics.log").exists()
            else []
        )
    _all_cores()
    jobs = _since(ts_log, GRPC_JOB, started)
    waiting = [int(m.group(2)) / 1e6 for m in jobs]
    backend = [int(m.group(3)) / 1e6 for m in jobs]
    handler = [float(m.group(2)) for m in _since(metrics_log, HANDLER_TIME, started)]
    shares = classify(raw_path.read_text()) if raw_path.exists() else {}
    runnable = Counter(
        name
        for dump in dumps
        for name in re.findall(r'^"([^"]+)".*\n\s+java.lang.Thread.State: RUNNABLE', dump, re.M)
    )
    lat = local["latency_batch1_ms"]
    split = {
        "model (in-process TorchScript p50)": lat["p50"],
        "our handler around the model (HandlerTime p50 - model)": None,
        "worker framing and socket (backend p50 - HandlerTime p50)": None,
        "frontend, gRPC, client (client p50 - backend p50)": None,
    }
    b, h, c = (_percentiles(backend) or {}), (_percentiles(handler) or {}), served
    if h.get("p50") is not None:
        split["our handler around the model (HandlerTime p50 - model)"] = round(h["p50"] - lat["p50"], 3)
    if b.get("p50") is not None and h.get("p50") is not None:
        split["worker framing and socket (backend p50 - HandlerTime p50)"] = round(b["p50"] - h["p50"], 3)
    if b.get("p50") is not None:
        split["frontend, gRPC, client (client p50 - backend p50)"] = round(c["p50"] - b["p50"], 3)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": model,
        "config": {"max_batch_delay_ms": 0, "batch_size": "registry default"},
        "cores": {"server": args.server_core, "client": args.client_core},
        "in_process_ms": lat,
        "client_ms": served,
        "added_p50_ms": round(served["p50"] - lat["p50"], 3),
        "frontend_queue_wait_ms": _percentiles(waiting),
        "backend_ms": _percentiles(backend),
        "handler_time_ms": _percentiles(handler),
        "split_p50_ms": split,
        "worker_wall_time_shares": shares,
        "frontend_runnable_threads": dict(runnable.most_common(12)),
        "load_average_1m": {"start": load_start, "end": _load()},
    }


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model-repository", type=Path, required=True, help="trained model repository")
    parser.add_argument(
        "--dataset", type=Path, default=None, help="ImageFolder root (default: the manifest's)"
    )
    parser.add_argument("--architecture", default=CPU_DEFAULT_ARCHITECTURE, help="(default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window (default: %(default)s)")
    parser.add_argument("--warmup-seconds", type=float, default=3.0, help="(default: %(default)s)")
    parser.add_argument("--server-core", type=int, default=1, help="(default: %(default)s)")
    parser.add_argument("--client-core", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument(
        "--run-dir", type=Path, default=Path("runs/bench-pinned"), help="(default: %(default)s)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="(default: %(default)s)")
    parser.add_argument("--label", default="", help="a name for this run in the results file name")
    return parser


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    result = profile(args)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%dT%H%M%S%z")
    path = args.out / f"torchserve-profile{'-' + args.label if args.label else ''}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(get_args_parser().parse_args()))
