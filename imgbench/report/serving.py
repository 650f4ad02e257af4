"""Serving section: latency percentiles and throughput per server, model, batch size and load point,
correct-under-load counts, and the SLO search result, from the load generator's result files."""

from __future__ import annotations

from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import num, table

# What each native server really is; the report never names the stand-in without saying so.
NATIVE_BACKEND_LABELS = {
    "torchserve": "TorchServe",
    "triton": "Triton (python backend + ONNX Runtime)",
    "tfserving": "TF Serving stand-in",
}


def backend_label(point: dict) -> str:
    backend = str(point.get("backend", "?"))
    label = point.get("backend_label") or NATIVE_BACKEND_LABELS.get(backend, backend)
    if backend == "tfserving" and "stand-in" not in label.lower() and point.get("stand_in", True):
        label += " (stand-in)"
    return label


def points(inputs: ReportInputs) -> list[dict]:
    """Every load point once: an SLO search's summary repeats the points its probes wrote."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for document in inputs.load_results:
        for point in document.get("points", []):
            key = (str(point.get("run_id", id(point))), str(point.get("point", id(point))))
            if key not in seen:
                seen.add(key)
                unique.append(point)
    return unique


def load_label(point: dict) -> str:
    if point.get("mode") == "open":
        return f"open {num(point.get('target_rate'), 0)}/s"
    return f"closed ×{point.get('users', point.get('concurrency', '?'))}"


def images_per_second(point: dict) -> float:
    for key in ("images_per_second", "images_per_s"):
        if point.get(key) is not None:
            return float(point[key])
    return float(point.get("throughput_rps", 0.0)) * int(point.get("batch_size", 1))


def best_throughput_by_backend(inputs: ReportInputs) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for point in points(inputs):
        if point.get("errors", 0):
            continue
        key = (backend_label(point), str(point.get("model")))
        best[key] = max(best.get(key, 0.0), images_per_second(point))
    return best


def serving_section(inputs: ReportInputs) -> str:
    rows = []
    for point in sorted(
        points(inputs),
        key=lambda p: (str(p.get("backend")), str(p.get("model")), p.get("batch_size", 1), load_label(p)),
    ):
        rows.append(
            [
                backend_label(point),
                point.get("model"),
                point.get("batch_size"),
                load_label(point),
                point.get("n"),
                num(point.get("p50_ms"), 2),
                num(point.get("p90_ms"), 2),
                num(point.get("p99_ms"), 2),
                num(point.get("p999_ms"), 2),
                num(point.get("throughput_rps"), 1),
                point.get("errors"),
                point.get("incorrect"),
            ]
        )
    parts = ["## Serving", ""]
    if not rows:
        parts.append("No load result in this run: no server was measured.")
        return "\n".join(parts) + "\n"
    parts += [
        "Client-side latency from an HdrHistogram over the measured window (warm-up excluded). Open-loop "
        "latency counts from each request's scheduled send time, so a server's queue shows up in it. "
        "`incorrect` counts answers whose top-1 differed from the label of a real validation image.",
        "",
        table(
            [
                "server",
                "model",
                "batch",
                "load",
                "n",
                "p50 ms",
                "p90 ms",
                "p99 ms",
                "p99.9 ms",
                "req/s",
                "errors",
                "incorrect",
            ],
            rows,
        ),
    ]
    searches = [s for document in inputs.load_results for s in document.get("slo_search", [])]
    if searches:
        parts += [
            "",
            "Highest arrival rate whose p99 stayed under the SLO (MLPerf Server-style search):",
            "",
            table(
                ["server", "model", "SLO ms", "max rate req/s", "p99 ms at that rate", "step s"],
                [
                    [
                        backend_label(s),
                        s.get("model"),
                        num(s.get("slo_ms"), 0),
                        num(s.get("max_rate"), 1),
                        num(s.get("p99_ms"), 2),
                        num(s.get("step_seconds", s.get("step_s")), 0),
                    ]
                    for s in searches
                ],
            ),
        ]
    failed = [document for document in inputs.load_results if document.get("failures")]
    for document in failed:
        for failure in document["failures"]:
            parts += ["", f"- load run problem: {failure}"]
    return "\n".join(parts) + "\n"
