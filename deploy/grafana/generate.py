"""Grafana dashboards for imgbench, built in code with grafana-foundation-sdk.

    .venv/core/bin/python deploy/grafana/generate.py           # rewrite deploy/grafana/dashboards/*.json
    .venv/core/bin/python deploy/grafana/generate.py --check   # exit 1 if a committed file is stale

Panels are data (``DASHBOARDS``): every PromQL expression is listed once, so tests can run each one
against a real Prometheus (tests/deploy/test_dashboard_queries.py) and the JSON is never edited by
hand. Metric names come from imgbench.observability (the load generator) and from each server's own
exporter: TorchServe ``ts_*`` (counters of microseconds), Triton ``nv_*`` (counters of
microseconds), TF Serving ``:tensorflow:serving:*`` (histograms in microseconds; the native stand-in
exports the same names with an ``implementation`` label).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

from imgbench import observability as obs

DASHBOARD_DIR = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="imgbench-prometheus")
RATE = "$__rate_interval"  # Grafana's window: at least four scrapes, whatever the zoom

# Names of the servers' own metrics (not ours to define: each server exports them).
TS_LATENCY_US = "ts_inference_latency_microseconds"
TS_QUEUE_US = "ts_queue_latency_microseconds"
TS_REQUESTS = "ts_inference_requests_total"
TS_PREDICTION_MS = "PredictionTime"  # gauge: the last batch's handler time, per ModelName
TS_QUEUE_MS = "QueueTime"  # gauge: the last job's time in the frontend queue
TS_REST_ONLY = (
    "TorchServe 0.12 updates its latency counters for REST inference only; the load generator "
    "speaks gRPC (the PredictionTime/QueueTime panel covers it)"
)
TRITON_REQUEST_US = "nv_inference_request_duration_us"
TRITON_QUEUE_US = "nv_inference_queue_duration_us"
TRITON_SUCCESS = "nv_inference_request_success"
TRITON_INFERENCES = "nv_inference_count"
TRITON_EXECUTIONS = "nv_inference_exec_count"
TFS_LATENCY_US = ":tensorflow:serving:request_latency"
# The real server exports request_count; the stand-in's prometheus_client counter appends _total.
TFS_REQUESTS = '{__name__=~":tensorflow:serving:request_count(_total)?"}'
TFS_QUEUE_US = ":tensorflow:serving:batching_session:queuing_latency"
TFS_BATCH_SIZE = ":tensorflow:serving:batching_session:processed_batch_size"
TFS_STANDIN_NO_QUEUE = "only the real TF Serving exports it; the native stand-in does not"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    may_be_empty: str = ""
    """Why this query can legitimately return nothing on the native stack ("" = it must not)."""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    description: str
    unit: str
    queries: tuple[Query, ...]
    slo_line: float | None = None
    """Draw a dashed threshold at this value (the latency SLO)."""


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: tuple[tuple[str, tuple[PanelSpec, ...]], ...]

    @property
    def filename(self) -> str:
        return f"{self.uid}.json"


def _ratio_or_zero(numerator: str, denominator: str) -> str:
    """Share of ``denominator``'s rate that is ``numerator``'s, by backend; 0 (not "no data") while
    ``numerator`` has no series yet, as a counter child that was never incremented does not exist."""
    num = f"sum by (backend) (rate({numerator}[{RATE}]))"
    den = f"sum by (backend) (rate({denominator}[{RATE}]))"
    return f"({num} or {den} * 0) / {den}"


def _client_quantile(q: float) -> Query:
    expr = f"histogram_quantile({q}, sum by (backend, le) (rate({obs.REQUEST_LATENCY}_bucket[{RATE}])))"
    return Query(expr, f"{{{{backend}}}} p{round(q * 100)}")


def _mean_us(total_us: str, count: str, by: str) -> str:
    """Mean seconds per request from a counter of microseconds and a counter of requests."""
    return f"sum by ({by}) (rate({total_us}[{RATE}])) / sum by ({by}) (rate({count}[{RATE}])) / 1e6"


def _tfs_quantile_s(metric: str, q: float, by: str = "model_name") -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket[{RATE}]))) / 1e6"


SLO = obs.DEFAULT_SLO_SECONDS

OVERVIEW = DashboardSpec(
    uid="imgbench-overview",
    title="imgbench: load and latency (client side)",
    description="What the load generator measured: latency from the scheduled send time, "
    "throughput, errors and wrong answers, by backend.",
    rows=(
        (
            "Latency and throughput",
            (
                PanelSpec(
                    "Latency p50 / p90 / p99 by backend",
                    f"From {obs.REQUEST_LATENCY} (client side, open loop: from the scheduled send "
                    f"time). Dashed line: the {SLO * 1000:g} ms p99 SLO.",
                    "s",
                    (_client_quantile(0.5), _client_quantile(0.9), _client_quantile(0.99)),
                    slo_line=SLO,
                ),
                PanelSpec(
                    "Throughput by backend",
                    f"Requests and images per second completed ({obs.REQUESTS}, {obs.IMAGES}).",
                    "reqps",
                    (
                        Query(f"sum by (backend) (rate({obs.REQUESTS}[{RATE}]))", "{{backend}} requests/s"),
                        Query(f"sum by (backend) (rate({obs.IMAGES}[{RATE}]))", "{{backend}} images/s"),
                    ),
                ),
                PanelSpec(
                    f"Share of requests within the {SLO * 1000:g} ms SLO",
                    "Exact, not interpolated: the histogram has a bucket edge at the SLO.",
                    "percentunit",
                    (
                        Query(
                            f'sum by (backend) (rate({obs.REQUEST_LATENCY}_bucket{{le="{SLO:g}"}}[{RATE}]))'
                            f" / sum by (backend) (rate({obs.REQUEST_LATENCY}_count[{RATE}]))",
                            "{{backend}}",
                        ),
                    ),
                ),
            ),
        ),
        (
            "Errors and correctness",
            (
                PanelSpec(
                    "Error ratio by backend",
                    f"{obs.REQUEST_ERRORS} / {obs.REQUESTS}: transport and server errors.",
                    "percentunit",
                    (Query(_ratio_or_zero(obs.REQUEST_ERRORS, obs.REQUESTS), "{{backend}}"),),
                ),
                PanelSpec(
                    "Incorrect-answer ratio by backend",
                    f"{obs.INCORRECT_ANSWERS} / {obs.REQUESTS}: answered, but a wrong top-1.",
                    "percentunit",
                    (Query(_ratio_or_zero(obs.INCORRECT_ANSWERS, obs.REQUESTS), "{{backend}}"),),
                ),
            ),
        ),
        (
            "Load generator",
            (
                PanelSpec(
                    "Users (closed loop) and target rate (open loop)",
                    f"{obs.USERS} and {obs.TARGET_RATE}.",
                    "short",
                    (
                        Query(f"sum by (backend) ({obs.USERS})", "{{backend}} users"),
                        Query(f"sum by (backend) ({obs.TARGET_RATE})", "{{backend}} target req/s"),
                    ),
                ),
            ),
        ),
    ),
)

SERVERS = DashboardSpec(
    uid="imgbench-servers",
    title="imgbench: servers (server side)",
    description="Each server's own view: time spent inside it, time queued for a batch, work done.",
    rows=(
        (
            "TorchServe",
            (
                PanelSpec(
                    "TorchServe: last prediction and queue time",
                    f"Gauges {TS_PREDICTION_MS} (handler time of the last batch, per model) and "
                    f"{TS_QUEUE_MS} (the last job's wait in the frontend queue), milliseconds shown in "
                    "seconds: coarse, but updated for gRPC requests too.",
                    "s",
                    (
                        Query(f"max by (ModelName) ({TS_PREDICTION_MS}) / 1e3", "{{ModelName}} prediction"),
                        Query(f"max by (Hostname) ({TS_QUEUE_MS}) / 1e3", "queue ({{Hostname}})"),
                    ),
                ),
                PanelSpec(
                    "TorchServe: mean inference and queue time (REST)",
                    f"{TS_LATENCY_US} and {TS_QUEUE_US} per request ({TS_REQUESTS}); TorchServe 0.12 "
                    "counts these for REST inference only.",
                    "s",
                    (
                        Query(
                            _mean_us(TS_LATENCY_US, TS_REQUESTS, "model_name"),
                            "{{model_name}} inference",
                            may_be_empty=TS_REST_ONLY,
                        ),
                        Query(
                            _mean_us(TS_QUEUE_US, TS_REQUESTS, "model_name"),
                            "{{model_name}} queue",
                            may_be_empty=TS_REST_ONLY,
                        ),
                    ),
                ),
                PanelSpec(
                    "TorchServe: requests per second",
                    f"{TS_REQUESTS}.",
                    "reqps",
                    (Query(f"sum by (model_name) (rate({TS_REQUESTS}[{RATE}]))", "{{model_name}}"),),
                ),
            ),
        ),
        (
            "Triton",
            (
                PanelSpec(
                    "Triton: mean request and queue time",
                    f"{TRITON_REQUEST_US} and {TRITON_QUEUE_US} per successful request.",
                    "s",
                    (
                        Query(_mean_us(TRITON_REQUEST_US, TRITON_SUCCESS, "model"), "{{model}} request"),
                        Query(_mean_us(TRITON_QUEUE_US, TRITON_SUCCESS, "model"), "{{model}} queue"),
                    ),
                ),
                PanelSpec(
                    "Triton: inferences per second and mean batch size",
                    f"{TRITON_INFERENCES} (images) and {TRITON_INFERENCES} / {TRITON_EXECUTIONS} "
                    "(images per executed batch: dynamic batching at work).",
                    "short",
                    (
                        Query(f"sum by (model) (rate({TRITON_INFERENCES}[{RATE}]))", "{{model}} images/s"),
                        Query(
                            f"sum by (model) (rate({TRITON_INFERENCES}[{RATE}]))"
                            f" / sum by (model) (rate({TRITON_EXECUTIONS}[{RATE}]))",
                            "{{model}} mean batch",
                        ),
                    ),
                ),
            ),
        ),
        (
            "TF Serving",
            (
                PanelSpec(
                    "TF Serving: request latency p50 / p99",
                    f"{TFS_LATENCY_US} (microseconds, shown in seconds). Natively this is the "
                    "stand-in (label implementation), not TF Serving.",
                    "s",
                    (
                        Query(_tfs_quantile_s(TFS_LATENCY_US, 0.5), "{{model_name}} p50"),
                        Query(_tfs_quantile_s(TFS_LATENCY_US, 0.99), "{{model_name}} p99"),
                    ),
                ),
                PanelSpec(
                    "TF Serving: batch queue time p50 / p99",
                    f"{TFS_QUEUE_US}: exported by TF Serving with batching on, per batching thread pool "
                    "(its only label is thread_pool_name, not model_name); the native stand-in does not "
                    "export it.",
                    "s",
                    (
                        Query(
                            _tfs_quantile_s(TFS_QUEUE_US, 0.5, by="thread_pool_name"),
                            "{{thread_pool_name}} p50",
                            TFS_STANDIN_NO_QUEUE,
                        ),
                        Query(
                            _tfs_quantile_s(TFS_QUEUE_US, 0.99, by="thread_pool_name"),
                            "{{thread_pool_name}} p99",
                            TFS_STANDIN_NO_QUEUE,
                        ),
                    ),
                ),
                PanelSpec(
                    "TF Serving: requests per second and mean batch size",
                    f":tensorflow:serving:request_count per model and {TFS_BATCH_SIZE}, which TF Serving "
                    "exports without labels (one distribution for the whole server).",
                    "short",
                    (
                        Query(f"sum by (model_name) (rate({TFS_REQUESTS}[{RATE}]))", "{{model_name}} req/s"),
                        Query(
                            f"sum by (instance) (rate({TFS_BATCH_SIZE}_sum[{RATE}]))"
                            f" / sum by (instance) (rate({TFS_BATCH_SIZE}_count[{RATE}]))",
                            "{{instance}} mean batch (all models)",
                        ),
                    ),
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (OVERVIEW, SERVERS)


def panel_queries() -> list[tuple[str, str, Query]]:
    """(dashboard uid, panel title, query) for every query of every panel."""
    return [
        (board.uid, panel.title, query)
        for board in DASHBOARDS
        for _, panels in board.rows
        for panel in panels
        for query in panel.queries
    ]


def _panel(spec: PanelSpec, panel_id: int) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .min(0)
        .height(8)
        .span(12)
        .line_width(1)
        .fill_opacity(10)
    )
    for index, query in enumerate(spec.queries):
        panel = panel.with_target(
            prometheus.Dataquery()
            .datasource(DATASOURCE)
            .expr(query.expr)
            .legend_format(query.legend)
            .ref_id(chr(ord("A") + index))
            .range()
        )
    if spec.slo_line is not None:
        steps = [Threshold(value=None, color="green"), Threshold(value=spec.slo_line, color="red")]
        panel = panel.thresholds(dash.ThresholdsConfig().mode(ThresholdsMode.ABSOLUTE).steps(steps))
        panel = panel.thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
    return panel


def build(spec: DashboardSpec) -> dict[str, object]:
    board = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(["imgbench"])
        .readonly()
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("utc")
    )
    panel_id = 0  # stable ids: links to a panel (viewPanel=N) survive regeneration
    for row_title, panels in spec.rows:
        panel_id += 1
        board = board.with_row(dash.Row(row_title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board = board.with_panel(_panel(panel, panel_id))
    return board.build().to_json()


def render(spec: DashboardSpec) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(build(spec)) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed dashboard is stale")
    parser.add_argument("--out", type=Path, default=DASHBOARD_DIR, help=f"(default: {DASHBOARD_DIR})")
    args = parser.parse_args(argv)
    stale = []
    for spec in DASHBOARDS:
        path = args.out / spec.filename
        text = render(spec)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        names = ", ".join(str(p) for p in stale)
        print(f"stale: {names}; run: .venv/core/bin/python deploy/grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
