"""Prometheus metrics under TF Serving's own names, each labelled ``implementation`` so that no
series can be mistaken for the real server's, and the HTTP side of the REST port:
``/monitoring/prometheus/metrics`` and TF Serving's REST model status ``/v1/models/<name>``."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    Info,
    generate_latest,
)

from tfserving_standin import IMPLEMENTATION_LABEL, NAME

METRICS_PATH = "/monitoring/prometheus/metrics"
# Microseconds, as TF Serving's request_latency; fine below 1 ms, up to 10 s.
LATENCY_BUCKETS_US = (100, 250, 500, 1000, 2000, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 1e6, 1e7)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self, tensorflow_version: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["model_name", "implementation"]
        self.requests = Counter(
            ":tensorflow:serving:request_count",
            "Requests by API and status (TF Serving stand-in).",
            [*labels, "API", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            ":tensorflow:serving:request_latency",
            "Request latency in microseconds (TF Serving stand-in).",
            [*labels, "API"],
            buckets=LATENCY_BUCKETS_US,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            ":tensorflow:serving:batching_session:processed_batch_size",
            "Rows per executed batch (TF Serving stand-in); _count is the number of batches run.",
            labels,
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        info = Info(
            "tfserving_standin", "What is serving: a stand-in, not TF Serving.", registry=self.registry
        )
        info.info(
            {"implementation": IMPLEMENTATION_LABEL, "name": NAME, "tensorflow_version": tensorflow_version}
        )

    def observe_request(self, model: str, api: str, status: str, seconds: float) -> None:
        self.requests.labels(model, IMPLEMENTATION_LABEL, api, status).inc()
        self.latency.labels(model, IMPLEMENTATION_LABEL, api).observe(seconds * 1e6)

    def observe_batch(self, model: str, rows: int) -> None:
        self.batch_size.labels(model, IMPLEMENTATION_LABEL).observe(rows)


def serve_http(
    address: str, port: int, metrics: Metrics, model_status: Callable[[str], dict | None]
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] == METRICS_PATH:
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
                return
            parts = self.path.strip("/").split("/")
            if len(parts) == 3 and parts[:2] == ["v1", "models"]:
                status = model_status(parts[2])
                if status is None:
                    body = {"error": f"Servable not found for request: Latest({parts[2]})"}
                    self._send(404, json.dumps(body).encode(), "application/json")
                else:
                    self._send(200, json.dumps(status).encode(), "application/json")
                return
            self._send(404, f"{NAME}: no such path {self.path}\n".encode(), "text/plain")

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every 2 s: stay quiet
            pass

    server = ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
