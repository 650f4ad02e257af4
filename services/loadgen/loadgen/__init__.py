"""imgbench's load generator: Locust with gevent-safe gRPC users for TorchServe, Triton and TF Serving.

    python -m loadgen --headless --backend triton --model pt_resnet18 --model-repository model-repository \\
        --mode open --rate 50 --step-duration 30 --warmup 5 --results-dir runs/load

Lossless latency (HdrHistogram) from each request's scheduled time in open loop, answers checked
against the labels, a Prometheus exporter on 9646, results as JSON and CSV (see services/loadgen/README.md).
"""

__version__ = "0.1.0"
