"""Serving benchmark: each native server against the same runtime in-process, from one run.

    .venv/core/bin/python -m imgbench.bench.serving --model-repository model-repository \\
        --dataset data/digits --seconds 10

Per server (TorchServe: TorchScript in .mar; Triton: python backend + ONNX Runtime; TF Serving
stand-in: SavedModel), for the CPU default architecture:
- latency at concurrency 1, batch 1: served p50/p99 over gRPC vs in-process p50/p99 (same runtime,
  one intra-op thread, run in the server's venv), as the added milliseconds and the ratio;
- throughput at concurrency 16 of single-image requests (server-side batching on) vs the best
  in-process batch throughput (images/s), as a ratio.
Client, servers and in-process runs share this machine's cores, as the report says. Percentiles come
from HdrHistogram (microsecond resolution, 3 significant digits). Results: JSON in
benchmarks/results/, and the "Serving" section of docs/benchmarks.md (replaced, others kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from imgbench import servers
from imgbench.catalog import CPU_DEFAULT_ARCHITECTURE
from imgbench.clients import InferenceClient, make_client
from imgbench.clients.images import load_eval_batch
from imgbench.errors import ImgbenchError
from imgbench.manifest import load_manifest
from imgbench.paths import ModelRepository, project_root, venv_bin
from imgbench.servers import InProcessBaseline, ServerSpec
from imgbench.stack import Stack
from imgbench.stack.ports import free_port_map

log = logging.getLogger("imgbench.bench.serving")
SECTION_START = "<!-- serving:start -->"
SECTION_END = "<!-- serving:end -->"


def bench_servers() -> dict[str, tuple[ServerSpec, InProcessBaseline]]:
    """The registered servers that have an in-process baseline to compare with."""
    return {
        name: (spec, spec.baseline) for name, spec in servers.SERVERS.items() if spec.baseline is not None
    }


SERVERS = tuple(bench_servers())


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, add_help=add_help, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model-repository", type=Path, default=Path("model-repository"), help="(default: model-repository)"
    )
    parser.add_argument(
        "--dataset", type=Path, default=None, help="ImageFolder root (default: the manifest's)"
    )
    parser.add_argument(
        "--architecture", default=CPU_DEFAULT_ARCHITECTURE, help=f"(default: {CPU_DEFAULT_ARCHITECTURE})"
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help=f"(default: {','.join(SERVERS)})")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement (default: 10)")
    # TorchScript specialises per batch size in its first calls (0.3-2.9 s each, measured): warm up long.
    parser.add_argument("--warmup-seconds", type=float, default=10.0, help="excluded (default: 10)")
    parser.add_argument("--concurrency", type=int, default=16, help="throughput clients (default: 16)")
    parser.add_argument(
        "--run-dir", type=Path, default=Path("runs/bench-serving"), help="(default: runs/bench-serving)"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results"), help="(default: benchmarks/results)"
    )
    parser.add_argument(
        "--docs", type=Path, default=Path("docs/benchmarks.md"), help="(default: docs/benchmarks.md)"
    )
    return parser


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)  # microseconds


def _summary(histogram: HdrHistogram) -> dict[str, float]:
    return {
        "n": histogram.get_total_count(),
        **{f"p{q:g}": histogram.get_value_at_percentile(q) / 1000 for q in (50, 90, 99, 99.9)},
        "max": histogram.get_max_value() / 1000,
    }


def closed_loop(
    clients: list[InferenceClient], model: str, images: np.ndarray, seconds: float, warmup: float
) -> dict[str, Any]:
    """len(clients) threads, each sending one image and waiting for the answer, for ``seconds``."""
    histogram = _histogram()
    lock = threading.Lock()
    counts = {"ok": 0, "errors": 0}
    start_measuring = time.perf_counter() + warmup
    stop = start_measuring + seconds

    def worker(index: int) -> None:
        client, row = clients[index], index
        while (now := time.perf_counter()) < stop:
            image = images[row % len(images)][None]
            row += len(clients)
            try:
                client.infer(model, image)
                ok = True
            except Exception:
                ok = False
            elapsed = time.perf_counter() - now
            if now >= start_measuring:
                with lock:
                    counts["ok" if ok else "errors"] += 1
                    if ok:
                        histogram.record_value(max(1, round(elapsed * 1e6)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        **_summary(histogram),
        "errors": counts["errors"],
        "throughput_images_per_s": counts["ok"] / seconds,
    }


def in_process(
    kind: str, venv: str, path: Path, images: np.ndarray, seconds: float, batch_sizes: str = "1,4,8,16,32"
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch:
        source, result = Path(scratch) / "in.npy", Path(scratch) / "out.json"
        np.save(source, images)
        script = project_root() / "services" / "serving" / "inprocess.py"
        subprocess.run(
            [str(venv_bin(venv) / "python"), str(script), "bench", kind, str(path), str(source),
             "--seconds", str(seconds), "--batch-sizes", batch_sizes, "--out", str(result)],
            check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        return json.loads(result.read_text())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    repository = ModelRepository(args.model_repository.resolve())
    names = args.servers.split(",")
    specs = bench_servers()
    unknown = [name for name in names if name not in specs]
    if unknown:
        raise ImgbenchError(
            f"--servers {args.servers!r}: no in-process baseline for {unknown}; known: {list(specs)}"
        )
    ports = free_port_map()
    results: dict[str, Any] = {}
    load_before = os.getloadavg()
    with Stack(args.run_dir, ports=ports, model_repository=repository.root) as stack:
        for server in names:
            spec, baseline = specs[server]
            model = servers.default_model(server, args.architecture)
            manifest = load_manifest(repository.manifest_path(model))
            images, _ = load_eval_batch(manifest, args.dataset or Path(manifest.dataset.path), limit=256)
            started = time.monotonic()
            stack.up([server])
            startup_s = time.monotonic() - started
            log.info("%s ready in %.1f s; measuring in-process %s", server, startup_s, baseline.kind)
            local = in_process(
                baseline.kind,
                spec.venv,
                baseline.artifact(repository, model, manifest.version),
                images,
                args.seconds,
            )
            target = f"127.0.0.1:{ports[server]['grpc']}"
            clients = [make_client(server, target, repository) for _ in range(args.concurrency)]
            log.info("%s: concurrency 1", server)
            served_c1 = closed_loop(clients[:1], model, images, args.seconds, args.warmup_seconds)
            log.info("%s: concurrency %d", server, args.concurrency)
            served_cn = closed_loop(clients, model, images, args.seconds, args.warmup_seconds)
            for client in clients:
                client.close()
            stack.down([server])  # one server at a time: they do not compete for the cores
            lat = local["latency_batch1_ms"]
            results[server] = {
                "model": model,
                "runtime": baseline.runtime,
                "startup_s": round(startup_s, 2),
                "in_process": local,
                "served_concurrency_1": served_c1,
                f"served_concurrency_{args.concurrency}": served_cn,
                "added_p50_ms": served_c1["p50"] - lat["p50"],
                "added_p99_ms": served_c1["p99"] - lat["p99"],
                "p50_ratio": served_c1["p50"] / lat["p50"],
                "p99_ratio": served_c1["p99"] / lat["p99"],
                "throughput_ratio": served_cn["throughput_images_per_s"]
                / local["best_throughput_images_per_s"],
            }
    return {
        "benchmark": "serving",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "hardware": {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "processor": platform.processor() or "unknown",
            # Other work on the machine skews every figure; the report says how busy it was.
            "load_average_1m": {"start": load_before[0], "end": os.getloadavg()[0]},
        },
        "settings": {
            "seconds": args.seconds,
            "warmup_seconds": args.warmup_seconds,
            "concurrency": args.concurrency,
            "batch": 1,
        },
        "results": results,
    }


def markdown(report: dict[str, Any], json_path: Path) -> str:
    concurrency = report["settings"]["concurrency"]
    columns = [
        "server (runtime)", "model", "startup s", "in-process p50 / p99 ms", "served c=1 p50 / p99 ms",
        "added p50 ms", "p50 ratio", "p99 ratio", "best in-process img/s (batch)",
        f"served c={concurrency} img/s", "throughput ratio",
    ]  # fmt: skip
    rows = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for server, r in report["results"].items():
        local, c1, cn = r["in_process"], r["served_concurrency_1"], r[f"served_concurrency_{concurrency}"]
        lat = local["latency_batch1_ms"]
        cells = [
            f"{server} ({r['runtime']})", r["model"], f"{r['startup_s']:.1f}",
            f"{lat['p50']:.2f} / {lat['p99']:.2f}", f"{c1['p50']:.2f} / {c1['p99']:.2f}",
            f"{r['added_p50_ms']:+.2f}", f"{r['p50_ratio']:.2f}", f"{r['p99_ratio']:.2f}",
            f"{local['best_throughput_images_per_s']:.0f} ({local['best_batch_size']})",
            f"{cn['throughput_images_per_s']:.0f}", f"{r['throughput_ratio']:.2f}",
        ]  # fmt: skip
        rows.append("| " + " | ".join(cells) + " |")
    hardware, settings = report["hardware"], report["settings"]
    return "\n".join(
        [
            SECTION_START,
            "## Serving",
            "",
            f"`python -m imgbench.bench.serving`, {report['created_at']}, {hardware['cpus']} CPU cores "
            f"({hardware['machine']}), no GPU; client, server and in-process runs share the cores "
            f"(1-minute load average {hardware['load_average_1m']['start']:.1f} at the start, "
            f"{hardware['load_average_1m']['end']:.1f} at the end). "
            f"{settings['seconds']:.0f} s per measurement after {settings['warmup_seconds']:.0f} s warm-up"
            ", batch 1 per request, HdrHistogram percentiles. In-process: the server's own runtime "
            "with one intra-op thread, in the server's venv. Natively TF Serving is the TF Serving stand-in "
            "(Python + TensorFlow) and Triton runs ONNX Runtime through its python backend.",
            "",
            *rows,
            "",
            f"Raw results: `{json_path.as_posix()}`.",
            SECTION_END,
        ]
    )


def write_docs(docs: Path, section: str) -> None:
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if SECTION_START in text and SECTION_END in text:
        before, rest = text.split(SECTION_START, 1)
        text = before + section + rest.split(SECTION_END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(text)


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = measure(args)
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"serving-{report['created_at'].replace(':', '')}.json"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    write_docs(args.docs, markdown(report, json_path))
    print(markdown(report, json_path))


if __name__ == "__main__":
    main(get_args_parser().parse_args())
