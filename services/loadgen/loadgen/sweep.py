"""The SLO search (MLPerf LoadGen's Server scenario): per backend, the highest open-loop (Poisson)
arrival rate whose p99 stays under the SLO with no errors, each probe a fresh headless load generator
run of its own.

    python -m loadgen.sweep --case triton:pt_resnet18 --case tfserving:tf_resnet18 --slo 0.1 \\
        --model-repository model-repository --out runs/load/sweep.json

Search: double the rate from --start-rate while the probe passes, then bisect between the last
passing and the first failing rate until they are within --tolerance of each other.

How long a probe lasts: its p99 must mean something. With n requests the p99 is the 0.01·n-th
largest latency; --min-samples 1000 puts 10 requests beyond it, so one slow outlier moves it by one
rank, not to the maximum. A probe at rate r therefore measures max(--step-duration, 1.25·1000/r)
seconds (25% margin: Poisson counts vary) after its --warmup (which lets the server's queues and
batchers settle at the new rate).
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imgbench.load_results import LoadPoint, LoadResult, SloSearch, load_load_result, write_load_result
from imgbench.observability import DEFAULT_SLO_SECONDS


@dataclass(frozen=True)
class Probe:
    rate: float
    p99_ms: float | None
    errors: int
    n: int
    throughput_rps: float | None
    passed: bool
    point: LoadPoint | None = field(default=None, repr=False)


@dataclass
class SearchResult:
    max_rate: float | None
    """Highest passing rate; None when even the start rate failed."""
    probes: list[Probe]


def judge(point: LoadPoint, rate: float, slo_s: float, min_samples: int) -> Probe:
    """A probe passes when it has enough samples, no errors, no wrong answers and p99 ≤ SLO."""
    p99 = point.p99_ms
    passed = (
        point.n >= min_samples
        and point.errors == 0
        and point.incorrect == 0
        and p99 is not None
        and p99 <= slo_s * 1000
    )
    return Probe(rate, p99, point.errors, point.n, point.throughput_rps, passed, point)


def search_max_rate(
    measure: Callable[[float], Probe],
    *,
    start_rate: float,
    max_rate: float,
    tolerance: float = 0.1,
    max_probes: int = 12,
) -> SearchResult:
    """Exponential ramp, then bisection. ``measure(rate)`` runs one probe.

    >>> capacity = 37.0
    >>> fake = lambda r: Probe(r, 1.0 if r <= capacity else 500.0, 0, 2000, r, r <= capacity)
    >>> round(search_max_rate(fake, start_rate=5, max_rate=1000, tolerance=0.05).max_rate, 1)
    36.7
    """
    probes: list[Probe] = []
    low, high = None, None
    rate = start_rate
    while len(probes) < max_probes:
        probe = measure(rate)
        probes.append(probe)
        if not probe.passed:
            high = rate
            break
        low = rate
        if rate >= max_rate:
            break
        rate = min(rate * 2, max_rate)
    while low is not None and high is not None and high / low - 1 > tolerance and len(probes) < max_probes:
        rate = math.sqrt(low * high)  # geometric middle: the rates span orders of magnitude
        probe = measure(rate)
        probes.append(probe)
        if probe.passed:
            low = rate
        else:
            high = rate
    return SearchResult(low, probes)


SAMPLES_MARGIN = 1.25
"""Poisson arrivals vary: aim 25% above --min-samples so a probe rarely falls short by chance."""


def probe_seconds(rate: float, step_duration: float, min_samples: int) -> float:
    return max(step_duration, SAMPLES_MARGIN * min_samples / rate)


def run_probe(args: argparse.Namespace, backend: str, model: str, rate: float, index: int) -> Probe:
    measured_s = probe_seconds(rate, args.step_duration, args.min_samples)
    run_id = f"{args.run_id}-{backend}-{model}-{index:02d}"
    argv = [
        sys.executable, "-m", "loadgen", "--headless", "--only-summary",
        "--backend", backend, "--model", model,
        "--model-repository", str(args.model_repository), "--batch-size", str(args.batch_size),
        "--mode", "open", "--arrivals", "poisson", "--rate", f"{rate:.3f}",
        "--step-duration", f"{args.warmup + measured_s:.3f}", "--warmup", str(args.warmup),
        "--drain", str(args.drain), "--slo", str(args.slo), "--metrics-port", "0",
        "--results-dir", str(args.results_dir), "--run-id", run_id, *args.loadgen_args,
    ]  # fmt: skip
    if args.targets.get(backend):
        argv += ["--target", args.targets[backend]]
    if args.dataset:
        argv += ["--dataset", str(args.dataset)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.warmup + measured_s + 300)
    path = Path(args.results_dir) / f"{run_id}.json"
    if not path.exists():
        raise SystemExit(f"probe {run_id} wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}")
    (point,) = load_load_result(path).points
    probe = judge(point, rate, args.slo, args.min_samples)
    print(
        f"{backend} {model} rate {rate:8.2f}/s: p99 {probe.p99_ms} ms, n {probe.n}, errors {probe.errors} "
        f"-> {'pass' if probe.passed else 'fail'}",
        flush=True,
    )
    return probe


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", action="append", required=True, help="backend:model, repeatable.")
    parser.add_argument(
        "--target", action="append", default=[], help="backend=host:port (default: its port)."
    )
    parser.add_argument("--model-repository", type=Path, default=Path("model-repository"))
    parser.add_argument(
        "--dataset", type=Path, default=None, help="ImageFolder root (default: the manifest's)."
    )
    parser.add_argument("--batch-size", type=int, default=1, help="Images per request (default 1).")
    parser.add_argument(
        "--slo", type=float, default=DEFAULT_SLO_SECONDS, help="p99 objective, s (default 0.1)."
    )
    parser.add_argument("--start-rate", type=float, default=5.0, help="First probe, req/s (default 5).")
    parser.add_argument("--max-rate", type=float, default=2000.0, help="Highest probe, req/s (default 2000).")
    parser.add_argument(
        "--tolerance", type=float, default=0.1, help="Stop when high/low-1 ≤ this (default 0.1)."
    )
    parser.add_argument("--max-probes", type=int, default=12, help="Probes per backend at most (default 12).")
    parser.add_argument("--step-duration", type=float, default=20.0, help="Measured s per probe, at least.")
    parser.add_argument(
        "--min-samples", type=int, default=1000, help="Requests per probe, at least (default 1000)."
    )
    parser.add_argument(
        "--warmup", type=float, default=5.0, help="Unmeasured s before each probe (default 5)."
    )
    parser.add_argument(
        "--drain", type=float, default=5.0, help="s for in-flight requests after (default 5)."
    )
    parser.add_argument("--results-dir", type=Path, default=Path("runs/load/sweep"), help="Probe results.")
    parser.add_argument("--run-id", default="sweep", help="Prefix of the probes' result files.")
    parser.add_argument(
        "--out", type=Path, default=None, help="Summary JSON (default RESULTS_DIR/RUN_ID.json)."
    )
    parser.add_argument("loadgen_args", nargs="*", help="After --: more loadgen options for every probe.")
    return parser


def main(args: argparse.Namespace) -> int:
    args.targets = dict(t.split("=", 1) for t in args.target)
    searches: list[SloSearch] = []
    points: list[LoadPoint] = []
    for case in args.case:
        backend, _, model = case.partition(":")
        if not model:
            raise SystemExit(f"--case must be backend:model, got {case!r}")
        counter = iter(range(args.max_probes))
        result = search_max_rate(
            lambda rate, b=backend, m=model, c=counter: run_probe(args, b, m, rate, next(c)),
            start_rate=args.start_rate,
            max_rate=args.max_rate,
            tolerance=args.tolerance,
            max_probes=args.max_probes,
        )
        best = next((p for p in result.probes if p.rate == result.max_rate), None)
        measured = [p.point for p in result.probes if p.point is not None]
        searches.append(
            SloSearch(
                backend=backend,
                server=measured[0].server if measured else None,
                model=model,
                batch_size=args.batch_size,
                slo_ms=args.slo * 1000,
                max_rate=result.max_rate,
                p99_ms=best.p99_ms if best else None,
                step_s=probe_seconds(
                    result.max_rate or args.start_rate, args.step_duration, args.min_samples
                ),
                probes=[{k: v for k, v in asdict(p).items() if k != "point"} for p in result.probes],
            )
        )
        points += measured
        print(
            f"{backend} {model}: highest rate with p99 ≤ {args.slo * 1000:g} ms: {result.max_rate}",
            flush=True,
        )
    out = args.out or Path(args.results_dir) / f"{args.run_id}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_load_result(
        out, LoadResult(kind="slo_search", run_id=args.run_id, slo_search=searches, points=points)
    )
    print(f"summary: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))
