"""Fixtures of the load generator's tests (loadgen venv): a digits model repository for a fake but
real Triton-protocol server (tests/loadgen/fake_triton.py), servers started as processes on free
ports, and the load generator run headless as a process, exactly as users run it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from lg_helpers import HERE, MODEL, PYTHON, Server, free_port

from imgbench.manifest import DatasetRef, InputSpec, Manifest, TrainingFigures, write_manifest
from imgbench.paths import ModelRepository

# One load process per loadgen run here, so each test's counts and costs are one process's; the default
# (one per core) is exercised where it is meant to be (test_client_bound.py passes --processes).
os.environ.setdefault("LOCUST_PROCESSES", "0")

ZERO_TRAINING: dict = dict.fromkeys(
    ("epochs", "best_epoch", "top1", "top5", "seconds_per_epoch", "images_per_second", "peak_memory_bytes"), 0
) | {"device": "cpu", "parameters": 0}


@pytest.fixture(scope="session")
def fake_repository(digits_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository whose only model is served by fake_triton.py (16×16 digits, NCHW)."""
    root = tmp_path_factory.mktemp("repo")
    info = json.loads((digits_dir / "dataset.json").read_text())
    counts = info["counts"]
    manifest = Manifest(
        model=MODEL,
        framework="pytorch",
        framework_version="none (nearest class mean in numpy)",
        architecture="centroid",
        version=1,
        input=InputSpec(name="image", shape=[None, 3, 16, 16], layout="NCHW"),
        output_names=["logits"],
        class_names=sorted(counts["val"]),
        dataset=DatasetRef(
            name="digits",
            path=str(digits_dir),
            num_train=sum(counts["train"].values()),
            num_eval=sum(counts["val"].values()),
            image_size=16,
        ),
        training=TrainingFigures(**ZERO_TRAINING),
    )
    write_manifest(ModelRepository(root).manifest_path(MODEL), manifest)
    return root


@pytest.fixture
def start_fake_triton(fake_repository: Path, digits_dir: Path, tmp_path: Path) -> Iterator:
    servers: list[Server] = []

    def start(service_time: float = 0.0, threads: int = 64) -> Server:
        port = free_port()
        argv = [
            PYTHON, str(HERE / "fake_triton.py"), "--port", str(port),
            "--model-repository", str(fake_repository), "--model", MODEL, "--dataset", str(digits_dir),
            "--service-time", str(service_time), "--threads", str(threads),
        ]  # fmt: skip
        server = Server(argv, port, tmp_path / f"fake-triton-{port}.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.kill()


@pytest.fixture
def health_server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    server = Server(
        [PYTHON, "-m", "loadgen.trivial_server", "--port", str(port)], port, tmp_path / "health.log"
    )
    yield server.start()
    server.kill()
