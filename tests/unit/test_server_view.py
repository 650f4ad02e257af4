"""The server-side view (imgbench.server_view): each server's figures turned into ms per request over a
window, and the report's row that puts them beside the client's latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import load_document, load_point

from imgbench import servers
from imgbench.report.inputs import read_inputs
from imgbench.report.serving import serving_section
from imgbench.server_view import (
    gauge_timings,
    histogram_timings,
    parse_prometheus,
    prometheus_snapshot,
    triton_timings,
)

STANDIN = servers.get_server("tfserving").timings
TORCHSERVE = servers.get_server("torchserve").timings


def standin_text(count: int, sum_us: float) -> str:
    labels = 'model_name="tf_x",implementation="tf-serving-stand-in",API="predict"'
    return "\n".join(
        [
            "# HELP :tensorflow:serving:request_latency Request latency",
            f":tensorflow:serving:request_latency_count{{{labels}}} {count}",
            f":tensorflow:serving:request_latency_sum{{{labels}}} {sum_us}",
            # Other models and other APIs are left out.
            ':tensorflow:serving:request_latency_count{model_name="other",API="predict"} 999',
            ':tensorflow:serving:request_latency_sum{model_name="tf_x",API="metadata"} 5e9',
        ]
    )


def test_prometheus_text_is_parsed_with_labels() -> None:
    (sample,) = parse_prometheus('QueueTime{ModelName="pt_x",Level="Host"} 1.5\n# comment\n')
    assert sample == ("QueueTime", {"ModelName": "pt_x", "Level": "Host"}, 1.5)


def test_the_stand_in_histogram_gives_the_mean_time_inside_the_server() -> None:
    assert STANDIN is not None
    before = prometheus_snapshot(standin_text(10, 20_000.0), STANDIN, "tf_x")
    after = prometheus_snapshot(standin_text(110, 320_000.0), STANDIN, "tf_x")
    assert before == {"count": 10.0, "sum": 20_000.0}
    timings = histogram_timings(before, after, STANDIN)
    assert timings is not None and timings.requests == 100 and timings.total_ms == pytest.approx(3.0)
    assert histogram_timings(after, after, STANDIN) is None  # no request in the window: nothing to say


def test_torchserve_gauges_are_averaged_over_the_window() -> None:
    assert TORCHSERVE is not None
    samples = [
        prometheus_snapshot(
            f'QueueTime{{ModelName="pt_x"}} {q}\nHandlerTime{{ModelName="pt_x"}} {h}\n', TORCHSERVE, "pt_x"
        )
        for q, h in [(1.0, 10.0), (3.0, 14.0)]
    ]
    timings = gauge_timings(samples, TORCHSERVE)
    assert timings is not None
    assert (timings.queue_ms, timings.handler_ms, timings.total_ms) == (2.0, 12.0, 14.0)


def test_triton_statistics_give_queue_and_compute_per_request() -> None:
    before = {
        "count": 0.0,
        "queue_ns": 0.0,
        "compute_input_ns": 0.0,
        "compute_infer_ns": 0.0,
        "compute_output_ns": 0.0,
    }
    after = {
        "count": 4.0,
        "queue_ns": 4e6,
        "compute_input_ns": 2e6,
        "compute_infer_ns": 8e6,
        "compute_output_ns": 2e6,
    }
    timings = triton_timings(before, after)
    assert timings is not None
    assert (timings.queue_ms, timings.compute_infer_ms, timings.total_ms) == (1.0, 2.0, 4.0)


def test_the_report_puts_the_server_breakdown_beside_the_client(tmp_path: Path) -> None:
    timings = {
        "source": "triton statistics API",
        "requests": 400,
        "queue_ms": 0.5,
        "compute_infer_ms": 1.5,
        "total_ms": 2.0,
    }
    point = load_point("triton", 1, 9.0, mean_ms=3.0, server_timings=timings)
    (tmp_path / "load").mkdir()
    (tmp_path / "load" / "run.json").write_text(json.dumps(load_document([point])))
    section = serving_section(read_inputs(tmp_path))
    row = next(line for line in section.splitlines() if "triton statistics API" in line)
    # n | client p50, p99 (of 500 requests: marked unreliable), mean | server queue, compute, total | outside
    assert "| 500 | 3.00 | 9.00† | 3.00 | 0.50 | 1.50 | 2.00 | 1.00 |" in row, row
