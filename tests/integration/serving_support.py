"""Shared fixtures of the serving tests: digits models trained once per session by the real trainers
(each in its own venv), the three model servers started once by the native stack runner on free
ports, and in-process reference logits computed in the matching venv.

Set IMGBENCH_TEST_MODEL_REPOSITORY (and IMGBENCH_TEST_DATASET) to reuse an already trained
repository instead of training (a fresh copy is served, so the version tests cannot spoil it), and
IMGBENCH_TEST_SERVERS (e.g. "triton,tfserving") to start only some servers.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from trained_digits import Trained, run_logged

from imgbench.clients import InferenceClient, make_client
from imgbench.clients.images import load_eval_batch
from imgbench.paths import ModelRepository, project_root, venv_bin
from imgbench.stack import Stack
from imgbench.stack.ports import PortMap, free_port_map

ROOT = project_root()
SERVERS = ("torchserve", "triton", "tfserving")
# (server, framework prefix): which exports each server serves in these tests.
CASES = [("torchserve", "pt"), ("triton", "pt"), ("triton", "tf"), ("tfserving", "tf")]
CASE_IDS = [f"{server}-{prefix}" for server, prefix in CASES]
# The venv each piece needs; a missing one skips with the command that builds it.
NEEDED_VENVS = ("pt", "tf", "torchserve", "triton", "tfserving")


def _require_servers() -> None:
    missing = [name for name in NEEDED_VENVS if not (venv_bin(name) / "python").exists()]
    if missing:
        pytest.skip(f"venvs missing: {missing}; run `scripts/setup.sh {' '.join(missing)}`")
    if not (ROOT / "imgbench" / "clients" / "_generated" / "__init__.py").exists():
        pytest.skip("gRPC stubs not generated; run `scripts/setup.sh core torchserve tfserving`")


@dataclass
class ServingStack:
    stack: Stack
    ports: PortMap
    trained: Trained
    startup_seconds: dict[str, float]

    def target(self, server: str) -> str:
        if server not in self.startup_seconds:
            pytest.skip(f"{server} not started (IMGBENCH_TEST_SERVERS)")
        return f"127.0.0.1:{self.ports[server]['grpc']}"

    def client(self, server: str, **options: object) -> InferenceClient:
        return make_client(server, self.target(server), self.trained.repository, **options)

    def pid(self, server: str) -> int:
        self.target(server)
        (status,) = [s for s in self.stack.status() if s.name == server]
        assert status.running, f"{server} is not running; log {status.log}"
        return status.pid


@pytest.fixture(scope="session")
def serving(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServingStack]:
    _require_servers()
    ports = free_port_map()
    stack = Stack(tmp_path_factory.mktemp("stack"), ports=ports, model_repository=trained.repository)
    startup: dict[str, float] = {}
    with stack:
        for server in os.environ.get("IMGBENCH_TEST_SERVERS", ",".join(SERVERS)).split(","):
            started = time.monotonic()
            stack.up([server])
            startup[server] = time.monotonic() - started
        print(f"\nstartup seconds: { {k: round(v, 1) for k, v in startup.items()} }", file=sys.stderr)
        yield ServingStack(stack, ports, trained, startup)


@dataclass(frozen=True)
class EvalSet:
    batch: np.ndarray
    labels: np.ndarray


@pytest.fixture(scope="session")
def eval_sets(trained: Trained) -> dict[str, EvalSet]:
    """Validation images preprocessed for each framework's model (64 of them: enough to compare)."""
    sets = {}
    for prefix in trained.models:
        batch, labels = load_eval_batch(trained.manifest(prefix), trained.dataset, limit=64)
        sets[prefix] = EvalSet(batch, labels)
    return sets


def reference_logits(
    server: str, trained: Trained, prefix: str, batch: np.ndarray, workdir: Path
) -> np.ndarray:
    """Logits from the runtime ``server`` uses, run in-process in its venv (a subprocess here)."""
    repository = ModelRepository(trained.repository)
    manifest = trained.manifest(prefix)
    model = manifest.model
    kind, venv, path = {
        "torchserve": ("torchscript", "torchserve", repository.torchserve_mar(model)),
        "triton": ("onnx", "triton", repository.triton_onnx(model, manifest.version)),
        "tfserving": ("savedmodel", "tfserving", repository.tfserving_version_dir(model, manifest.version)),
    }[server]
    source, target = workdir / f"{server}-{prefix}-in.npy", workdir / f"{server}-{prefix}-out.npy"
    np.save(source, batch)
    script = ROOT / "services" / "serving" / "inprocess.py"
    argv = [str(venv_bin(venv) / "python"), str(script), "predict", kind, str(path), str(source), str(target)]
    run_logged(argv, workdir / f"reference-{server}-{prefix}.log", timeout=300)
    return np.load(target)


class References:
    """In-process logits per (server, framework), computed on first use."""

    def __init__(self, trained: Trained, eval_sets: dict[str, EvalSet], workdir: Path) -> None:
        self._trained, self._eval_sets, self._workdir = trained, eval_sets, workdir
        self._cache: dict[tuple[str, str], np.ndarray] = {}

    def __getitem__(self, case: tuple[str, str]) -> np.ndarray:
        if case not in self._cache:
            server, prefix = case
            batch = self._eval_sets[prefix].batch
            self._cache[case] = reference_logits(server, self._trained, prefix, batch, self._workdir)
        return self._cache[case]


@pytest.fixture(scope="session")
def references(
    trained: Trained, eval_sets: dict[str, EvalSet], tmp_path_factory: pytest.TempPathFactory
) -> References:
    return References(trained, eval_sets, tmp_path_factory.mktemp("reference"))
