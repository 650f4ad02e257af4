"""The exporter under real Prometheus and Pushgateway processes, all started by the stack runner: the
scraped histogram's p99 agrees with the HdrHistogram p99 within bucket resolution, and a headless run
leaves its final metrics on the Pushgateway."""

from __future__ import annotations

import bisect
import json
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
from lg_helpers import MODEL

from imgbench import observability as obs
from imgbench.stack import Stack
from imgbench.stack.ports import free_port_map

pytestmark = pytest.mark.integration


def query(stack: Stack, promql: str) -> list[dict]:
    url = stack.url("prometheus", "http", "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def bucket_of(seconds: float, edges: tuple[float, ...]) -> int:
    """Index of the histogram bucket ``(edges[i-1], edges[i]]`` holding ``seconds``."""
    return bisect.bisect_left(edges, seconds * (1 - 1e-9))


def test_prometheus_p99_matches_hdrhistogram_and_pushgateway_keeps_the_run(
    start_fake_triton, fake_repository: Path, tmp_path: Path
) -> None:
    server = start_fake_triton(service_time=0.004)
    run_id = f"metrics-test-{uuid.uuid4().hex[:8]}"  # a group no earlier push can have left behind
    ports = free_port_map()
    args = (
        f"--headless --backend triton --target {server.target} --model {MODEL} --mode open "
        f"--arrivals poisson --rate 60 --step-duration 12 --warmup 0 --drain 2 --run-id {run_id}"
    )
    stack = Stack(
        tmp_path / "stack",
        ports=ports,
        model_repository=fake_repository,
        options={"loadgen.backend": "triton", "loadgen.args": args},
    )
    selector = f'backend="triton",model="{MODEL}",batch_size="1"'
    with stack:
        stack.up(["prometheus", "pushgateway", "loadgen"])
        # During the run Prometheus scrapes the exporter on the loadgen's metrics port.
        deadline, scraped = time.monotonic() + 30, []
        while time.monotonic() < deadline and not scraped:
            scraped = query(stack, f'{obs.REQUESTS}{{job="loadgen",{selector}}} > 0')
            time.sleep(0.5)
        assert scraped, "Prometheus never scraped the load generator's requests counter"
        # A headless run stops by itself at the end of its plan.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and any(s.running for s in stack.status() if s.name == "loadgen"):
            time.sleep(0.5)
        results = json.loads((tmp_path / "stack" / "loadgen" / "results" / f"{run_id}.json").read_text())
        (row,) = results["points"]
        assert row["n"] > 300 and row["errors"] == 0
        hdr_p99 = row["p99_ms"] / 1000
        edges = obs.latency_buckets()

        # What Prometheus scraped last from the exporter (the run has ended: take the last samples).
        last = f"last_over_time({obs.REQUEST_LATENCY}_bucket{{job='loadgen',{selector}}}[5m])"
        (scraped_p99,) = query(stack, f"histogram_quantile(0.99, sum by (le) ({last}))")
        # The last scrape may miss the final second or two of requests: allow one bucket either side.
        assert abs(bucket_of(float(scraped_p99["value"][1]), edges) - bucket_of(hdr_p99, edges)) <= 1, (
            scraped_p99,
            hdr_p99,
        )

        # What the headless run pushed when it ended: all of it, so the same bucket exactly.
        pushed = f"{obs.REQUEST_LATENCY}_bucket{{job='imgbench_loadgen',run_id='{run_id}',{selector}}}"
        deadline, answer = time.monotonic() + 20, []
        while time.monotonic() < deadline and not answer:
            answer = query(stack, f"histogram_quantile(0.99, sum by (le) ({pushed}))")
            time.sleep(0.5)
        assert answer, "the Pushgateway's copy of the run never reached Prometheus"
        pushed_p99 = float(answer[0]["value"][1])
        assert bucket_of(pushed_p99, edges) == bucket_of(hdr_p99, edges), (pushed_p99, hdr_p99)

        # The Pushgateway itself holds the run's counters, equal to the results' totals.
        with urllib.request.urlopen(stack.url("pushgateway", "http", "/metrics"), timeout=5) as response:
            text = response.read().decode()
        total = sum(sum(c.values()) for c in results["timeline"].values())
        line = next(
            ln for ln in text.splitlines() if ln.startswith(obs.REQUESTS) and f'run_id="{run_id}"' in ln
        )
        assert float(line.rsplit(" ", 1)[1]) == total
        scraped_value = float(scraped_p99["value"][1])
        print(
            f"\np99: HdrHistogram {hdr_p99:.4f} s, scraped {scraped_value:.4f} s, pushed {pushed_p99:.4f} s"
        )
