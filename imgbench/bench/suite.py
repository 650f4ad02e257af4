"""`make bench`: every benchmark of the project at fixed settings, in one session on one machine, each
comparison as ratios from one run, appended to the tracked history (benchmarks/history.jsonl) with the
date, the commit and the hardware, so regressions show.

    .venv/core/bin/python -m imgbench.bench.suite [--run-dir runs/bench-<time>] [--only NAME ...]

Benchmarks (fixed settings, see BENCHMARKS): trainer-pt and trainer-tf (trainer vs a bare loop, fp32 vs
reduced precision, eager vs compiled), serving (served vs in-process), pinned (issue 12: client and
server on separate cores, added p50 at concurrency 1 and tuned vs default throughput), loadgen
capacity, the SLO sweep (highest arrival rate with p99 under 100 ms per server), trainers (both
trainers' fp32 img/s vs
their bare loops, back to back, against the 0.95 goal) and parity (the recipe-parity replay's step-0 and
trajectory differences), the last two in ``imgbench.bench.fair_fight``. Results are not asserted: a
benchmark is not a test. A failed benchmark is recorded as failed and the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psutil

from imgbench import servers
from imgbench.bench import fair_fight, fusion
from imgbench.demo import DemoSettings, StageFailed, run_logged, stage_dataset, stage_train_pt, stage_train_tf
from imgbench.paths import project_root, venv_bin
from imgbench.stack import Stack
from imgbench.stack.ports import free_port_map

HISTORY = project_root() / "benchmarks" / "history.jsonl"


def hardware() -> dict[str, object]:
    cpu = platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "platform": platform.platform(),
        "gpu": "none" if not Path("/dev/nvidia0").exists() else "present",
        "load_average_at_start": round(os.getloadavg()[0], 2),
    }


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=project_root(),
        ).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet"], cwd=project_root(), check=False).returncode != 0
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _newest_json(folder: Path, since: float) -> list[Path]:
    return sorted(p for p in folder.glob("*.json") if p.stat().st_mtime >= since)


def bench_trainer_pt(settings: DemoSettings, out: Path) -> None:
    run_logged(
        "bench-pt",
        [
            str(venv_bin("pt") / "python"), "-m", "trainer_pt", "bench",
            "--data-path", str(settings.data_dir),
            "--image-size", str(settings.image_size), "--threads", "1", "-j", "0", "--steps", "20",
            "--warmup-steps", "5", "--variants", "fp32,bf16", "--out", str(out),
        ],
        settings,
        {"PYTHONPATH": str(project_root() / "services" / "trainer-pt")},
    )  # fmt: skip


def bench_trainer_tf(settings: DemoSettings, out: Path) -> None:
    run_logged(
        "bench-tf",
        [
            str(venv_bin("tf") / "python"), "-m", "trainer_tf", "bench", "--model", settings.architecture,
            "--image-size", str(settings.image_size), "--steps", "20", "--out", str(out),
        ],
        settings,
        {"PYTHONPATH": str(project_root() / "services" / "trainer-tf"), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip


def bench_serving(settings: DemoSettings, out: Path) -> None:
    run_logged(
        "bench-serving",
        [
            sys.executable, "-m", "imgbench.bench.serving",
            "--model-repository", str(settings.model_repository),
            "--dataset", str(settings.data_dir), "--architecture", settings.architecture, "--seconds", "10",
            "--run-dir", str(settings.run_dir / "bench-serving"), "--out", str(out),
        ],
        settings,
    )  # fmt: skip


def bench_loadgen(settings: DemoSettings, out: Path) -> None:
    run_logged(
        "bench-loadgen",
        [
            str(venv_bin("loadgen") / "python"), str(project_root() / "benchmarks" / "loadgen_capacity.py"),
            "--seconds", "15", "--out", str(out / "loadgen_capacity.json"),
        ],
        settings,
    )  # fmt: skip


def bench_sweep(settings: DemoSettings, out: Path) -> None:
    """SLO search per server; 20 s probes with at least 1,000 requests, so p99 rests on ≥ 10 samples."""
    stack = Stack(
        settings.run_dir / "sweep-stack", ports=free_port_map(), model_repository=settings.model_repository
    )
    with stack:
        stack.up(list(servers.server_names()))
        cases = {name: servers.default_model(name, settings.architecture) for name in servers.server_names()}
        argv = [str(venv_bin("loadgen") / "python"), "-m", "loadgen.sweep", "--slo", "0.1"]
        for backend, model in cases.items():
            argv += [
                "--case",
                f"{backend}:{model}",
                "--target",
                f"{backend}=127.0.0.1:{stack.ports[backend]['grpc']}",
            ]
        argv += [
            "--model-repository", str(settings.model_repository), "--dataset", str(settings.data_dir),
            "--results-dir", str(settings.run_dir / "sweep"), "--out", str(out / "sweep.json"),
        ]  # fmt: skip
        run_logged(
            "bench-sweep", argv, settings, {"PYTHONPATH": str(project_root() / "services" / "loadgen")}
        )


def bench_pinned(settings: DemoSettings, out: Path) -> None:
    """Issue 12 (``imgbench.bench.pinned``): client and server on separate cores; each server's added
    p50 at concurrency 1 over its runtime in-process, and each tuned server's throughput at its SLO vs
    its default configuration's."""
    run_logged(
        "bench-pinned",
        [
            sys.executable, "-m", "imgbench.bench.pinned",
            "--model-repository", str(settings.model_repository), "--dataset", str(settings.data_dir),
            "--architecture", settings.architecture, "--seconds", "5",
            "--run-dir", str(settings.run_dir / "bench-pinned"), "--out", str(out),
        ],
        settings,
    )  # fmt: skip


def bench_independent(settings: DemoSettings, out: Path) -> None:
    """Issue 13: imgbench vs an independent client (h2load) per server at concurrency 1, 4, 16, back
    to back, plus the trivial health server (benchmarks/loadgen_vs_independent.py; ratios, no asserts)."""
    loadgen_python = str(venv_bin("loadgen") / "python")
    script = str(project_root() / "benchmarks" / "loadgen_vs_independent.py")
    env = {"PYTHONPATH": str(project_root() / "services" / "loadgen")}
    common = ["--seconds", "10", "--out", str(out / "loadgen_vs_independent.json")]
    health_port = free_port_map()["triton"]["grpc"]  # any free port
    health = subprocess.Popen(
        [loadgen_python, "-m", "loadgen.trivial_server", "--port", str(health_port)], cwd=project_root()
    )
    try:
        time.sleep(2.0)
        run_logged(
            "bench-independent-health",
            [loadgen_python, script, "--backend", "health", "--target", f"127.0.0.1:{health_port}",
             "--label", "trivial gRPC (grpc.health.v1)", *common],
            settings, env,
        )  # fmt: skip
    finally:
        health.terminate()
        health.wait(timeout=10)
    stack = Stack(
        settings.run_dir / "independent-stack",
        ports=free_port_map(),
        model_repository=settings.model_repository,
    )
    with stack:
        stack.up(list(servers.server_names()))
        for backend in servers.server_names():
            run_logged(
                f"bench-independent-{backend}",
                [loadgen_python, script, "--backend", backend,
                 "--target", f"127.0.0.1:{stack.ports[backend]['grpc']}",
                 "--model", servers.default_model(backend, settings.architecture),
                 "--model-repository", str(settings.model_repository), *common],
                settings, env,
            )  # fmt: skip


BENCHMARKS: dict[str, Callable[[DemoSettings, Path], None]] = {
    "trainer-pt": bench_trainer_pt,
    "trainer-tf": bench_trainer_tf,
    "serving": bench_serving,
    "pinned": bench_pinned,
    "loadgen": bench_loadgen,
    "sweep": bench_sweep,
    # Issue 11 (imgbench.bench.fair_fight): both trainers vs their bare loops back to back; recipe parity.
    "trainers": fair_fight.bench_trainers,
    "parity": fair_fight.bench_parity,
    "independent": bench_independent,
    # Issue 17 (imgbench.bench.fusion): trainer-pt --fused-sgd and trainer-tf XLA, each side its own process.
    "fusion": fusion.bench_fusion,
}
NEEDS_MODELS = {"serving", "sweep", "pinned", "independent"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run-dir", type=Path, default=Path("runs") / f"bench-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    )
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    parser.add_argument("--history", type=Path, default=HISTORY, help=f"(default: {HISTORY})")
    args = parser.parse_args(argv)

    settings = DemoSettings(run_dir=args.run_dir.resolve(), epochs=3)
    results_dir = settings.run_dir / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit(),
        "hardware": hardware(),
        "benchmarks": {},
    }
    stage_dataset(settings)
    if NEEDS_MODELS & set(args.only):
        stage_train_pt(settings)
        stage_train_tf(settings)
    for name in args.only:
        out = results_dir / name
        out.mkdir(parents=True, exist_ok=True)
        started = time.time()
        entry: dict[str, object] = {}
        try:
            BENCHMARKS[name](settings, out)
            entry["status"] = "ok"
        except StageFailed as exc:
            entry.update(status="failed", reason=str(exc).splitlines()[0])
        entry["seconds"] = round(time.time() - started, 1)
        entry["results"] = [json.loads(p.read_text()) for p in _newest_json(out, started)]
        record["benchmarks"][name] = entry  # type: ignore[index]
        print(f"{name}: {entry['status']} in {entry['seconds']} s", flush=True)
    args.history.parent.mkdir(parents=True, exist_ok=True)
    with args.history.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record, default=str) + "\n")
    print(f"appended to {args.history}; raw results in {results_dir}")
    return 0 if all(e["status"] == "ok" for e in record["benchmarks"].values()) else 1  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
