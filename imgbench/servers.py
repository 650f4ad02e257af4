"""The model servers imgbench knows, once: one ``ServerSpec`` per server.

Everything that differs per server and is a fact, not code, lives here; every list that names servers
derives from ``SERVERS``: the default ports (``imgbench.ports``), the metric label values
(``imgbench.observability``), the protocol clients (``imgbench.clients``), the load generator's
protocols (``loadgen.backends``), the stack's services (``imgbench.stack.services``) and scrape jobs
(``imgbench.stack.prometheus_config``), the demo's and the bench's cases.

Adding a server is one entry here, one launch builder (a function ``StackContext -> LaunchPlan``,
named by ``launch``) and one client (an ``InferenceClient`` subclass, named by ``client``).

    >>> from imgbench.servers import get_server
    >>> get_server("triton").ports["grpc"]
    8001
    >>> [s.name for s in SERVERS.values() if "tf" in s.frameworks]
    ['triton', 'tfserving']

Report labels do not come from here: a load result names its server as the server reported itself
(``imgbench.load_results.ServerIdentity``); ``label`` only names the server in help texts and logs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from imgbench.errors import UnknownServerError
from imgbench.paths import ModelRepository

ArtifactPath = Callable[[ModelRepository, str, int], Path]
"""(repository, model, version) -> the file or folder the server loads for that model."""


@dataclass(frozen=True)
class Knob:
    """A setting of a server that changes its throughput or latency (what ``imgbench tune`` searches)."""

    name: str
    default: int | float
    description: str
    candidates: tuple[int | float, ...] = ()
    """Values ``imgbench tune`` tries unless told others (the default among them)."""


@dataclass(frozen=True)
class TimingsSource:
    """Where the server's own view of a request's time comes from (``imgbench.server_view``).

    - ``triton_statistics``: the statistics API (cumulative queue and compute times per request);
    - ``prometheus_histogram``: a latency histogram's ``_sum``/``_count`` on the metrics endpoint;
    - ``prometheus_gauges``: gauges of the last request's times, sampled through the window.
    """

    kind: Literal["triton_statistics", "prometheus_histogram", "prometheus_gauges"]
    description: str
    metric: str = ""
    """Histogram base name (``prometheus_histogram``)."""
    unit_ms: float = 1.0
    """Milliseconds per unit of the metric's values."""
    labels: Mapping[str, str] = field(default_factory=dict)
    """Only series with these labels."""
    model_label: str = ""
    """The label naming the model; series of other models are left out."""
    gauges: Mapping[str, str] = field(default_factory=dict)
    """``ServerTimings`` field -> gauge name (``prometheus_gauges``)."""


@dataclass(frozen=True)
class InProcessBaseline:
    """The same runtime run in-process by services/serving/inprocess.py (the serving bench's baseline)."""

    kind: str
    """inprocess.py's model kind: torchscript | onnx | savedmodel."""
    artifact: ArtifactPath
    runtime: str
    """What the server runs, for the bench's table, e.g. 'TorchServe 0.12, TorchScript'."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    """Identifier everywhere: service name, backend label value, port map key, client key."""
    label: str
    """Display name for help texts and logs."""
    native_stand_in: bool
    """Natively (this machine) a stand-in for the real server runs."""
    native_note: str
    """What differs natively from the real server, for the report's environment section ('' if nothing)."""
    frameworks: tuple[str, ...]
    """Model-name prefixes (``imgbench.paths.FRAMEWORK_PREFIXES`` values) it serves, preferred first."""
    venv: str
    """The venv under .venv/ it runs from natively."""
    ports: Mapping[str, int]
    """Default ports by name; ``grpc`` is the inference endpoint every client uses."""
    client: str
    """``module:Class`` of its ``imgbench.clients.base.InferenceClient``."""
    protocol: str
    """The gRPC API it speaks, e.g. 'Triton KServe-v2 gRPC'."""
    launch: str
    """``module:function`` building its native ``LaunchPlan`` from a ``StackContext``."""
    description: str
    """One line for `imgbench stack`: what runs natively."""
    metrics_port: str
    """Name (in ``ports``) of the port Prometheus scrapes."""
    metrics_path: str
    knobs: tuple[Knob, ...] = ()
    baseline: InProcessBaseline | None = None
    timings: TimingsSource | None = None
    """How the server reports its own time per request; None: it does not."""
    auth_key_file: str = ""
    """File in its native run directory holding a bearer key the load generator must send ('' if none)."""
    scrape_job: str = ""
    """Prometheus job name; the server's name unless set."""

    @property
    def job(self) -> str:
        return self.scrape_job or self.name


def resolve(reference: str) -> Any:
    """The object a ``module:attribute`` reference names, imported now."""
    module, _, attribute = reference.partition(":")
    if not module or not attribute:
        raise ValueError(f"a reference must be 'module:attribute', got {reference!r}")
    try:
        return getattr(importlib.import_module(module), attribute)
    except AttributeError:
        raise ValueError(f"{module} has no attribute {attribute!r} (reference {reference!r})") from None


def _ports(**ports: int) -> Mapping[str, int]:
    return MappingProxyType(ports)


SERVERS: dict[str, ServerSpec] = {
    spec.name: spec
    for spec in (
        ServerSpec(
            name="torchserve",
            label="TorchServe",
            native_stand_in=False,
            native_note="",
            frameworks=("pt",),
            venv="torchserve",
            ports=_ports(grpc=7070, grpc_management=7071, rest=8080, management=8081, metrics=8082),
            client="imgbench.clients.torchserve:TorchServeClient",
            protocol="TorchServe gRPC",
            launch="imgbench.stack.model_servers:torchserve_plan",
            description="TorchServe 0.12 (gRPC, REST, management, Prometheus metrics)",
            metrics_port="metrics",
            metrics_path="/metrics",
            knobs=(
                Knob("batch_size", 8, "batchSize of the model's archive config", (1, 2, 4, 8, 16)),
                Knob("max_batch_delay_ms", 5, "maxBatchDelay, ms", (0, 1, 2, 5, 10)),
                Knob("workers", 1, "default_workers_per_model", (1, 2)),
                Knob("torch_threads", 1, "intra-op threads per worker (OMP_NUM_THREADS)", (1, 2)),
            ),
            baseline=InProcessBaseline(
                "torchscript",
                lambda repo, model, version: repo.torchserve_mar(model),
                "TorchServe 0.12, TorchScript",
            ),
            timings=TimingsSource(
                "prometheus_gauges",
                "TorchServe's QueueTime and HandlerTime gauges (last request), sampled",
                model_label="ModelName",
                gauges=MappingProxyType({"queue_ms": "QueueTime", "handler_ms": "HandlerTime"}),
            ),
            auth_key_file="key_file.json",
        ),
        ServerSpec(
            name="triton",
            label="Triton",
            native_stand_in=False,
            native_note="Triton natively runs its **python backend** calling ONNX Runtime (the "
            "pip-installable Triton has no onnxruntime backend); containers use the official image's "
            "onnxruntime backend.",
            frameworks=("pt", "tf"),
            venv="triton",
            ports=_ports(http=8000, grpc=8001, metrics=8002),
            client="imgbench.clients.triton:TritonClient",
            protocol="Triton KServe-v2 gRPC",
            launch="imgbench.stack.model_servers:triton_plan",
            description="Triton 2.51 from nvidia-pytriton: python backend running ONNX Runtime",
            metrics_port="metrics",
            metrics_path="/metrics",
            knobs=(
                Knob("max_batch_size", 32, "config.pbtxt max_batch_size", (1, 4, 8, 16, 32)),
                Knob(
                    "preferred_batch_size",
                    8,
                    "largest dynamic_batching preferred_batch_size",
                    (1, 2, 4, 8, 16),
                ),
                Knob(
                    "max_queue_delay_us",
                    2000,
                    "dynamic_batching max_queue_delay_microseconds",
                    (0, 500, 1000, 2000, 5000),
                ),
                Knob("instance_count", 1, "instance_group count", (1, 2)),
                Knob("ort_threads", 1, "ONNX Runtime intra-op threads per instance", (1, 2)),
            ),
            baseline=InProcessBaseline(
                "onnx",
                lambda repo, model, version: repo.triton_onnx(model, version),
                "Triton 2.51 python backend, ONNX Runtime",
            ),
            timings=TimingsSource(
                "triton_statistics", "Triton's statistics API (queue, compute input/infer/output)"
            ),
        ),
        ServerSpec(
            name="tfserving",
            label="TF Serving",
            native_stand_in=True,
            native_note="TF Serving is a **stand-in** natively: the real `tensorflow_model_server` binary "
            "is in no registry this machine reaches, so a Python server implementing the same gRPC API "
            "(Predict, GetModelMetadata, GetModelStatus) serves the same SavedModels. Its latencies are "
            "not TF Serving's.",
            frameworks=("tf",),
            venv="tfserving",
            ports=_ports(grpc=8500, rest=8501),
            client="imgbench.clients.tfserving:TFServingClient",
            protocol="TF Serving gRPC",
            launch="imgbench.stack.model_servers:tfserving_plan",
            description="TF Serving stand-in: the TF Serving gRPC API over SavedModels, in Python",
            metrics_port="rest",
            metrics_path="/monitoring/prometheus/metrics",
            knobs=(
                Knob("max_batch_size", 32, "batching parameters max_batch_size", (1, 4, 8, 16, 32)),
                Knob(
                    "batch_timeout_micros",
                    2000,
                    "batching parameters batch_timeout_micros",
                    (0, 500, 1000, 2000, 5000),
                ),
                Knob("num_batch_threads", 1, "batching parameters num_batch_threads", (1, 2)),
                Knob("intra_op_threads", 1, "tensorflow_intra_op_parallelism", (1, 2)),
                Knob("inter_op_threads", 1, "tensorflow_inter_op_parallelism", (1, 2)),
            ),
            baseline=InProcessBaseline(
                "savedmodel",
                lambda repo, model, version: repo.tfserving_version_dir(model, version),
                "TF Serving stand-in, SavedModel",
            ),
            timings=TimingsSource(
                "prometheus_histogram",
                "the server's request_latency histogram (Predict, in the server)",
                metric=":tensorflow:serving:request_latency",
                unit_ms=0.001,
                labels=MappingProxyType({"API": "predict"}),
                model_label="model_name",
            ),
        ),
    )
}


def get_server(name: str) -> ServerSpec:
    """The spec of server ``name``; an unknown name lists the known ones."""
    try:
        return SERVERS[name]
    except KeyError:
        raise UnknownServerError(f"unknown server {name!r}; known: {', '.join(SERVERS)}") from None


def server_names() -> tuple[str, ...]:
    return tuple(SERVERS)


def load_cases(architecture: str) -> list[tuple[str, str]]:
    """(server, model) for every framework each server serves: what the demo measures."""
    return [(s.name, f"{prefix}_{architecture}") for s in SERVERS.values() for prefix in s.frameworks]


def default_model(server: str, architecture: str) -> str:
    """The model a one-model run measures on ``server``: its preferred framework's."""
    return f"{get_server(server).frameworks[0]}_{architecture}"
