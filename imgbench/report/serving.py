"""Serving section: latency percentiles and throughput per server, model, batch size and load point,
correct-under-load counts, and the SLO search result, from the load results (``imgbench.load_results``).

Every server is named as it identified itself in the results (``ServerIdentity.label``): a stand-in
says so because the stand-in said so, and a run against the real server is not mislabelled."""

from __future__ import annotations

from imgbench.load_results import LoadPoint, ServerTimings, SloSearch
from imgbench.report.inputs import ReportInputs
from imgbench.report.markdown import num, table
from imgbench.report.repeats import across_repeats
from imgbench.report.stats import UNRELIABLE_NOTE, percentile_cell


def backend_label(point: LoadPoint) -> str:
    return point.server.label


def points(inputs: ReportInputs) -> list[LoadPoint]:
    """Every load point once: an SLO search's summary repeats the points its probes wrote. Repeats of a
    point (another ``seed``) are other measurements, kept even under the same run id."""
    seen: set[tuple[str, str, int | None]] = set()
    unique = []
    for result in inputs.load_results:
        for point in result.points:
            key = (point.run_id, point.point, point.seed)
            if key not in seen:
                seen.add(key)
                unique.append(point)
    return unique


def load_label(point: LoadPoint) -> str:
    return point.load_label


def images_per_second(point: LoadPoint) -> float:
    return point.images_per_s


def best_throughput_by_backend(inputs: ReportInputs) -> dict[tuple[str, str], float]:
    best: dict[tuple[str, str], float] = {}
    for point in points(inputs):
        if point.errors:
            continue
        key = (backend_label(point), point.model)
        best[key] = max(best.get(key, 0.0), images_per_second(point))
    return best


def search_label(search: SloSearch, inputs: ReportInputs) -> str:
    """The server as it identified itself during the search (or in a point of the same case)."""
    if search.server is not None:
        return search.server.label
    for point in points(inputs):
        if (point.backend, point.model) == (search.backend, search.model):
            return point.server.label
    return f"{search.backend} (unidentified)"


def _search_n(search: SloSearch) -> int | None:
    """Requests behind the p99 at the search's highest passing rate (its probe's n), if recorded."""
    for probe in search.probes:
        if search.max_rate is not None and probe.get("rate") == search.max_rate and "n" in probe:
            return int(probe["n"])
    return None


def _compute_ms(timings: ServerTimings) -> float | None:
    parts = [
        timings.compute_input_ms,
        timings.compute_infer_ms,
        timings.compute_output_ms,
        timings.handler_ms,
    ]
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def client_verdict(point: LoadPoint) -> str:
    """The point's ``client_bound`` verdict for the table: no point is shown without one."""
    if point.client_bound is None:
        return "not measured"
    cost = point.client_cpu_ms_per_request
    per_request = f", {cost * 1000:.0f} µs/req" if cost is not None else ""
    return ("**CLIENT-BOUND**" if point.client_bound else "ok") + per_request


def client_bound_notes(measured: list[LoadPoint]) -> list[str]:
    """Why each client-bound point was, and what to do: its figures are the generator's limit."""
    bound = [(p, p.client) for p in measured if p.client_bound and p.client is not None]
    unmeasured = [p for p in measured if p.client_bound is None]
    lines = []
    if bound:
        lines += [
            "",
            f"{len(bound)} point(s) were limited by the load generator, not the server: their latency and "
            "throughput are the generator's, a lower bound of what the server serves.",
            "",
        ]
        for point, client in bound:
            lines.append(
                f"- {backend_label(point)} {point.model} b{point.batch_size} {load_label(point)}: "
                f"{'; '.join(client.reasons)}. What to do: {client.advice}."
            )
    if unmeasured:
        lines += [
            "",
            f"{len(unmeasured)} point(s) come from a load generator that did not measure itself "
            "(`client` not measured): whether the client limited them is unknown; rerun the load.",
        ]
    return lines


def server_settings(measured: list[LoadPoint]) -> list[str]:
    """Each server's threads, workers and device as recorded with its points (``server_config``): what
    the server reported (Triton's model config) or what imgbench configured, as ``config_source`` says.
    An execution accelerator (TensorRT) is named only where the server reported one."""
    settings: dict[tuple[str, str], dict[str, object]] = {}
    for point in measured:
        if point.server_config:
            settings.setdefault((backend_label(point), point.model), dict(point.server_config))
    if not settings:
        return []
    rows = [
        [
            server,
            model,
            ", ".join(f"{k}={v}" for k, v in sorted(config.items()) if k != "config_source"),
            config.get("config_source", "–"),
        ]
        for (server, model), config in sorted(settings.items())
    ]
    return [
        "",
        "Server settings each point ran with (threads per worker/instance, workers, device):",
        "",
        table(["server", "model", "settings", "source"], rows),
    ]


def server_side_view(measured: list[LoadPoint]) -> list[str]:
    """Client-side latency and the server's own breakdown in one row per point: what the server does
    not account for (client mean minus server total) is network, protocol and client."""
    rows = []
    for point in measured:
        timings = point.server_timings
        if timings is None:
            continue
        outside = (
            point.mean_ms - timings.total_ms
            if point.mean_ms is not None and timings.total_ms is not None
            else None
        )
        rows.append(
            [
                backend_label(point),
                point.model,
                point.batch_size,
                load_label(point),
                point.n,
                num(point.p50_ms, 2),
                percentile_cell(point.p99_ms, 99.0, point.n),
                num(point.mean_ms, 2),
                num(timings.queue_ms, 2),
                num(_compute_ms(timings), 2),
                num(timings.total_ms, 2),
                num(outside, 2),
                timings.source,
            ]
        )
    if not rows:
        return []
    return [
        "",
        "The server's own view of the same windows (ms per request; means): queue, compute (Triton: "
        "input + infer + output; TorchServe: handler) and its total, beside the client's. `outside` is the "
        "client's mean minus the server's total: network, protocol and client. " + UNRELIABLE_NOTE,
        "",
        table(
            [
                "server",
                "model",
                "batch",
                "load",
                "n",
                "client p50",
                "client p99",
                "client mean",
                "server queue",
                "server compute",
                "server total",
                "outside",
                "source",
            ],
            rows,
        ),
    ]


def serving_section(inputs: ReportInputs) -> str:
    rows = [
        [
            backend_label(point),
            point.model,
            point.batch_size,
            load_label(point),
            point.n,
            num(point.p50_ms, 2),
            num(point.p90_ms, 2),
            percentile_cell(point.p99_ms, 99.0, point.n),
            percentile_cell(point.p999_ms, 99.9, point.n),
            num(point.throughput_rps, 1),
            point.errors,
            point.incorrect,
            client_verdict(point),
        ]
        for point in sorted(
            points(inputs),
            key=lambda p: (p.backend, p.model, p.batch_size, p.mode, p.users or 0, p.target_rate or 0),
        )
    ]
    parts = ["## Serving", ""]
    if not rows:
        parts.append("No load result in this run: no server was measured.")
        return "\n".join(parts) + "\n"
    parts += [
        "Client-side latency from an HdrHistogram over the measured window (warm-up excluded). Open-loop "
        "latency counts from each request's scheduled send time, so a server's queue shows up in it. "
        "Every percentile is over its row's `n` requests; " + UNRELIABLE_NOTE + " "
        "`incorrect` counts answers whose top-1 differed from the label of a real validation image. "
        "Each server is named as it identified itself. `client` is the load generator's verdict on "
        "itself: its CPU per request (all its processes) and whether it, not the server, limited the point "
        "(a process at ≥ 90% of a core; closed loop, its CPU per request ≥ 10% of the mean latency; open "
        "loop, ≥ 5% of sends over 1 ms late).",
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
                "client",
            ],
            rows,
        ),
    ]
    parts += client_bound_notes(points(inputs))
    parts += across_repeats(points(inputs))
    parts += server_side_view(points(inputs))
    parts += server_settings(points(inputs))
    searches = [s for result in inputs.load_results for s in result.slo_search]
    if searches:
        parts += [
            "",
            "Highest arrival rate whose p99 stayed under the SLO (MLPerf Server-style search); `n`: the "
            "requests behind that p99 (its probe's). " + UNRELIABLE_NOTE,
            "",
            table(
                ["server", "model", "SLO ms", "max rate req/s", "n", "p99 ms at that rate", "step s"],
                [
                    [
                        search_label(s, inputs),
                        s.model,
                        num(s.slo_ms, 0),
                        num(s.max_rate, 1),
                        _search_n(s),
                        percentile_cell(s.p99_ms, 99.0, _search_n(s) or 0),
                        num(s.step_s, 0),
                    ]
                    for s in searches
                ],
            ),
        ]
    for result in inputs.load_results:
        for failure in result.failures:
            parts += ["", f"- load run problem: {failure}"]
    return "\n".join(parts) + "\n"
