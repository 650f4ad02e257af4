"""Each server's metrics endpoint answers Prometheus text with the metric names dashboards use."""

from __future__ import annotations

import urllib.request

import numpy as np
import pytest
from serving_support import EvalSet, ServingStack

from imgbench.stack.prometheus_config import SCRAPE_JOBS

pytestmark = [pytest.mark.integration]

EXPECTED = {
    # ts_inference_latency_microseconds / ts_queue_latency_microseconds only get samples from REST
    # requests (TorchServe 0.12); over gRPC the per-model series are the request count and the
    # backend's gauges.
    "torchserve": ["ts_inference_requests_total", "PredictionTime", "QueueTime", "Requests2XX"],
    "triton": ["nv_inference_count", "nv_inference_exec_count", "nv_inference_request_duration_us"],
    "tfserving": [
        ":tensorflow:serving:request_count_total",
        ":tensorflow:serving:request_latency_bucket",
        ":tensorflow:serving:batching_session:processed_batch_size_count",
        "tfserving_standin_info",
    ],
}
PREFIX = {"torchserve": "pt", "triton": "pt", "tfserving": "tf"}


@pytest.mark.parametrize("server", sorted(EXPECTED))
def test_metrics_endpoint_serves_prometheus_text(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str
) -> None:
    model = serving.trained.models[PREFIX[server]]
    with serving.client(server) as client:
        client.infer(model, eval_sets[PREFIX[server]].batch[:2])  # so per-model series exist
    _, port_name, path = SCRAPE_JOBS[server]  # the path Prometheus scrapes
    url = f"http://127.0.0.1:{serving.ports[server][port_name]}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    samples = {
        line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    missing = [name for name in EXPECTED[server] if name not in samples]
    assert not missing, f"{server} metrics lack {missing}; have {sorted(samples)[:40]}"
    assert any(model in line for line in text.splitlines() if not line.startswith("#")), (
        f"no series for {model}"
    )
    if server == "tfserving":
        # Every stand-in series says what it is.
        series = [line for line in text.splitlines() if line.startswith(":tensorflow:serving")]
        assert series and all('implementation="tf-serving-stand-in"' in line for line in series)
    assert np.isfinite(len(samples))
