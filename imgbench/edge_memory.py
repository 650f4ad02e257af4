"""Peak memory of a TFLite interpreter running one model, measured in a fresh process.

    python -m imgbench.edge_memory run model-repository/edge/pt_mobilenet_v3_small/model_fp32.tflite
    python -m imgbench.edge_memory bench --model-repository model-repository --repeats 3 \
        --output benchmarks/results/edge-memory.json

Run with a venv that has LiteRT's interpreter (``ai_edge_litert``: trainer-tf's and trainer-pt's). Each
measurement is its own process, so nothing another model left behind counts: the child imports numpy
and the interpreter, resets the kernel's peak-RSS mark (``/proc/self/clear_refs`` ← 5, Linux ≥ 4.0),
takes the baseline, loads the model from its file (memory-mapped, as a device would), allocates the
tensors and runs N single-image invocations; the figure is the peak RSS (VmHWM) minus the baseline.
Where the mark cannot be reset, ``getrusage``'s ``ru_maxrss`` before and after is used and the method
says so. Latency is timed per ``invoke`` with the same thread count.

The parent (``measure_tflite_memory``) needs nothing but the standard library, so the core can call it
for either trainer's venv (``python=``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from imgbench.atomic import atomic_write_text
from imgbench.errors import ImgbenchError

log = logging.getLogger(__name__)

DEFAULT_INVOCATIONS = 50
DEFAULT_THREADS = 1
RESULTS_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EdgeMemory:
    """One model's interpreter in one fresh process."""

    model_bytes: int  # the .tflite file
    baseline_rss_bytes: int  # after imports, before the model is loaded
    peak_rss_bytes: int  # the process's peak while loading, allocating and invoking
    peak_growth_bytes: int  # peak - baseline: what the interpreter and the model added at most
    steady_growth_bytes: int  # RSS after the last invocation - baseline
    method: str  # "vmhwm" (peak mark reset after imports) or "ru_maxrss"
    invocations: int
    threads: int
    latency_ms_p50: float  # per invoke, one image
    latency_ms_mean: float
    interpreter: str

    def as_details(self) -> dict[str, object]:
        """The export record's ``details["memory"]``."""
        return asdict(self)


def measure_tflite_memory(
    path: Path,
    *,
    threads: int = DEFAULT_THREADS,
    invocations: int = DEFAULT_INVOCATIONS,
    python: str | Path | None = None,
    timeout_s: float = 600,
) -> EdgeMemory:
    """Load ``path`` in a fresh ``python`` process (default: this one's interpreter), run it
    ``invocations`` times on ``threads`` threads and return its peak memory growth and latency.

    >>> measure_tflite_memory(Path("edge/pt_resnet18/model_fp32.tflite")).peak_growth_bytes  # doctest: +SKIP
    48123904
    """
    path = Path(path)
    if not path.is_file():
        raise ImgbenchError(f"no TFLite model at {path}: export one first (edge/<model>/model_*.tflite)")
    if invocations < 1 or threads < 1:
        raise ImgbenchError(f"invocations and threads must be at least 1, got {invocations} and {threads}")
    command = [
        str(python or sys.executable), "-m", "imgbench.edge_memory", "run", str(path),
        "--threads", str(threads), "--invocations", str(invocations), "--json",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": str(threads)}
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        raise ImgbenchError(f"measuring {path} took over {timeout_s:.0f} s; lower --invocations") from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ImgbenchError(f"measuring the interpreter's memory on {path} failed: {last[0]}")
    return EdgeMemory(**json.loads(lines[-1]))


# -- the child: one model, one process ----------------------------------------------------------------
def _status_bytes(field: str) -> int | None:
    """``VmHWM``/``VmRSS`` of this process from /proc/self/status, in bytes (None off Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where it cannot be."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _ru_maxrss_bytes() -> int:
    scale = 1 if platform.system() == "Darwin" else 1024  # Linux reports KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _measure_here(path: Path, threads: int, invocations: int) -> EdgeMemory:
    import numpy as np
    from ai_edge_litert import __version__ as litert_version
    from ai_edge_litert.interpreter import Interpreter

    rng = np.random.default_rng(0)
    vmhwm = _reset_peak()
    baseline = (_status_bytes("VmRSS") if vmhwm else _ru_maxrss_bytes()) or 0
    try:
        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ImgbenchError(f"{path} is not a TFLite model LiteRT can load: {reason}") from None
    inputs = []
    for detail in interpreter.get_input_details():
        shape = [max(int(d), 1) for d in detail["shape"]]
        dtype = np.dtype(detail["dtype"])
        values = rng.standard_normal(shape) if dtype.kind == "f" else np.zeros(shape)
        inputs.append((detail["index"], values.astype(dtype)))
    outputs = [detail["index"] for detail in interpreter.get_output_details()]
    latencies = []
    for _ in range(invocations):
        start = time.perf_counter()
        for index, values in inputs:
            interpreter.set_tensor(index, values)
        interpreter.invoke()
        for index in outputs:
            interpreter.get_tensor(index)
        latencies.append(time.perf_counter() - start)
    # RSS first: the high-water mark read after it covers it (reading /proc allocates a little).
    steady = _status_bytes("VmRSS") or 0
    peak = max((_status_bytes("VmHWM") if vmhwm else _ru_maxrss_bytes()) or 0, steady)
    return EdgeMemory(
        model_bytes=path.stat().st_size,
        baseline_rss_bytes=baseline,
        peak_rss_bytes=peak,
        peak_growth_bytes=max(peak - baseline, 0),
        steady_growth_bytes=max(steady - baseline, 0),
        method="vmhwm" if vmhwm else "ru_maxrss",
        invocations=invocations,
        threads=threads,
        latency_ms_p50=float(np.median(latencies) * 1000.0),
        latency_ms_mean=float(np.mean(latencies) * 1000.0),
        interpreter=f"ai_edge_litert {litert_version}",
    )


# -- the bench: every TFLite model of a repository, interleaved ---------------------------------------
def tflite_models(repository: Path) -> list[tuple[str, str, str, Path]]:
    """(model, framework, export key, file) of every published TFLite export in the manifests."""
    from imgbench.manifest import load_manifest
    from imgbench.paths import ModelRepository

    repo = ModelRepository(Path(repository))
    found = []
    for manifest_path in sorted(repo.manifests_dir.glob("*.json")):
        manifest = load_manifest(manifest_path)
        for key, record in sorted(manifest.exports.items()):
            if record.status == "ok" and record.path.endswith(".tflite"):
                found.append((manifest.model, manifest.framework, key, repo.root / record.path))
    if not found:
        raise ImgbenchError(f"{repo.root} has no TFLite export in its manifests; export with TFLite first")
    return found


def bench(repository: Path, output: Path, repeats: int, threads: int, invocations: int) -> dict[str, object]:
    """Each model ``repeats`` times, round-robin (one fresh process each); writes ``output`` (JSON)."""
    models = tflite_models(repository)
    rows: dict[tuple[str, str], dict[str, object]] = {}
    for repeat in range(repeats):
        for model, framework, key, path in models:
            memory = measure_tflite_memory(path, threads=threads, invocations=invocations)
            row = rows.setdefault(
                (model, key),
                {"model": model, "framework": framework, "export": key, "path": str(path), "runs": []},
            )
            row["runs"].append(memory.as_details())  # type: ignore[union-attr]
            log.info(
                "repeat %d %s %s: %.1f MB file, peak +%.1f MB, %.3f ms/image",
                repeat + 1, model, key, memory.model_bytes / 1e6, memory.peak_growth_bytes / 1e6,
                memory.latency_ms_p50,
            )  # fmt: skip
    result = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "kind": "edge_memory",
        "repository": str(repository),
        "repeats": repeats,
        "threads": threads,
        "invocations": invocations,
        "host": {"machine": platform.machine(), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg()},
        "models": list(rows.values()),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, json.dumps(result, indent=2) + "\n")
    return result


def get_args_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], add_help=add_help)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one model in this process (what the parent starts)")
    run.add_argument("path", type=Path, help="a .tflite file")
    run.add_argument("--json", action="store_true", help="print the result as one JSON line")
    many = commands.add_parser("bench", help="every TFLite export of a repository, one process each")
    many.add_argument("--model-repository", type=Path, required=True, help="repository with manifests")
    many.add_argument("--output", type=Path, required=True, help="results file (JSON)")
    many.add_argument("--repeats", type=int, default=3, help="measurements per model (default: %(default)s)")
    for sub in (run, many):
        sub.add_argument("--threads", type=int, default=DEFAULT_THREADS, help="(default: %(default)s)")
        sub.add_argument(
            "--invocations", type=int, default=DEFAULT_INVOCATIONS, help="(default: %(default)s)"
        )
    return parser


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "run":
            if not args.path.is_file():
                raise ImgbenchError(f"no TFLite model at {args.path}")
            memory = _measure_here(args.path, args.threads, args.invocations)
            print(json.dumps(memory.as_details()) if args.json else memory)
        else:
            result = bench(args.model_repository, args.output, args.repeats, args.threads, args.invocations)
            print(f"wrote {args.output}: {len(result['models'])} TFLite models × {args.repeats}")  # type: ignore[arg-type]
    except ImgbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
