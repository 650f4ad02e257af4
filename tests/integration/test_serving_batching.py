"""Server-side batching is on: concurrent single-image requests run in fewer executions, counted by
each server itself (Triton's statistics API, TorchServe's request counter and per-batch worker
log, the stand-in's batch-size histogram)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from serving_support import EvalSet, ServingStack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONCURRENCY = 16
REQUESTS = 128


def _metric_sum(text: str, name: str, label_filter: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label_filter in line and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _metrics_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def _torchserve_batches(serving: ServingStack, model: str) -> Callable[[], tuple[float, float]]:
    """(requests, batches): requests from ts_inference_requests_total; the worker logs one
    "Backend received inference" line per batch it executes (model_log.log, worker named after the model)."""
    log = serving.stack.run_dir / "torchserve" / "logs" / "model_log.log"
    url = f"http://127.0.0.1:{serving.ports['torchserve']['metrics']}/metrics"

    def count() -> tuple[float, float]:
        requests = _metric_sum(_metrics_text(url), "ts_inference_requests_total", f'model_name="{model}"')
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        batches = sum(1 for line in lines if f"-{model}_" in line and "Backend received inference" in line)
        return requests, float(batches)

    return count


def _counters(serving: ServingStack, server: str, model: str) -> Callable[[], tuple[float, float]]:
    if server == "triton":
        client = serving.client("triton")

        def triton() -> tuple[float, float]:
            stats = client.statistics(model)  # type: ignore[attr-defined]
            return float(stats["inference_count"]), float(stats["execution_count"])

        return triton
    if server == "tfserving":
        url = f"http://127.0.0.1:{serving.ports['tfserving']['rest']}/monitoring/prometheus/metrics"
        prefix = ":tensorflow:serving:batching_session:processed_batch_size"
        label = f'model_name="{model}"'

        def standin() -> tuple[float, float]:
            text = _metrics_text(url)
            return _metric_sum(text, f"{prefix}_sum", label), _metric_sum(text, f"{prefix}_count", label)

        return standin
    return _torchserve_batches(serving, model)


@pytest.mark.parametrize(("server", "prefix"), [("torchserve", "pt"), ("triton", "pt"), ("tfserving", "tf")])
def test_concurrent_requests_run_in_fewer_batches(
    serving: ServingStack, eval_sets: dict[str, EvalSet], server: str, prefix: str
) -> None:
    model = serving.trained.models[prefix]
    images = eval_sets[prefix].batch
    count = _counters(serving, server, model)
    rows_before, batches_before = count()
    clients = [serving.client(server) for _ in range(CONCURRENCY)]

    def one(index: int) -> None:
        clients[index % CONCURRENCY].infer(model, images[index % len(images)][None])

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(one, range(REQUESTS)))
    rows_after, batches_after = count()
    rows, batches = rows_after - rows_before, batches_after - batches_before
    print(f"{server}/{model}: {REQUESTS} concurrent requests -> {rows:.0f} rows in {batches:.0f} executions")
    assert rows == REQUESTS, f"{server} counted {rows} rows for {REQUESTS} requests"
    assert 0 < batches < REQUESTS * 0.75, (
        f"{server}: {batches} executions for {REQUESTS} requests: not batching"
    )
