"""Every Grafana panel query answers with data: a real short load run against each native server,
scraped by a real Prometheus (the native stack runner, free ports), then each panel's PromQL through
Prometheus's HTTP API.

Slow (trains two digits models unless IMGBENCH_TEST_MODEL_REPOSITORY and IMGBENCH_TEST_DATASET name
a trained repository, starts five services, runs the load generator three times): marked
integration and slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from deploy_support import load_generator_module
from trained_digits import Trained

from imgbench.paths import ModelRepository, venv_bin
from imgbench.stack import Stack
from imgbench.stack import loadgen as loadgen_service
from imgbench.stack.loadgen import ARGS_OPTION, BACKEND_OPTION
from imgbench.stack.ports import free_port_map

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IMAGE_SIZE = 32
NEEDED_VENVS = ("pt", "tf", "torchserve", "triton", "tfserving", "loadgen")
# backend -> framework prefix of the model it is loaded with
RUNS = {"torchserve": "pt", "triton": "pt", "tfserving": "tf"}
RUN_SECONDS = 8
# Grafana's $__rate_interval, as the test evaluates it: long enough to span all three runs.
RATE_WINDOW = "5m"


def _require_tools() -> None:
    missing = [name for name in NEEDED_VENVS if not (venv_bin(name) / "python").exists()]
    if missing:
        pytest.skip(f"venvs missing: {missing}; run `scripts/setup.sh {' '.join(missing)}`")
    for binary in ("prometheus", "prometheus-pushgateway"):
        if shutil.which(binary) is None:
            pytest.skip(f"{binary} is not installed; run scripts/setup.sh")
    pytest.importorskip("grafana_foundation_sdk", reason="dev extra not installed: scripts/setup.sh core")


def _model_repository(trained: Trained, workdir: Path) -> Path:
    """A private copy of the session's trained repository: this test runs its own servers on it, beside
    the serving tests' (whose Triton assembles triton-python/ inside the repository)."""
    repository = workdir / "model-repository"
    shutil.copytree(
        trained.repository, repository, symlinks=True, ignore=shutil.ignore_patterns("triton-python")
    )
    return repository


def _query(stack: Stack, promql: str) -> list[dict]:
    url = stack.url("prometheus", "http", "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def test_every_panel_query_returns_data(tmp_path: Path, trained: Trained) -> None:
    _require_tools()
    generator = load_generator_module()
    repository = _model_repository(trained, tmp_path)
    models = {name.split("_", 1)[0]: name for name in ModelRepository(repository).models()}
    assert set(models) == {"pt", "tf"}, f"the trainers exported {models}"

    stack = Stack(tmp_path / "stack", ports=free_port_map(), model_repository=repository)
    with stack:
        stack.up(["prometheus", "pushgateway", "torchserve", "triton", "tfserving"])
        for backend, prefix in RUNS.items():
            # The native stack's loadgen command (imgbench/stack/loadgen.py), its exporter on the
            # port Prometheus scrapes. Run here rather than with stack.up: between runs that port has
            # connections in TIME_WAIT, which the runner's port check (bind without SO_REUSEADDR)
            # takes for a port in use, while the exporter itself binds it fine.
            stack.options[BACKEND_OPTION] = backend
            stack.options[ARGS_OPTION] = (
                f"--headless --model {models[prefix]} -u 2 --images 64 --step-duration {RUN_SECONDS} "
                f"--warmup 1 --drain 1 --run-id dashboards-{backend} --only-summary"
            )
            plan = loadgen_service.build(stack.context())
            log = tmp_path / f"loadgen-{backend}.log"
            with log.open("w") as handle:
                run = subprocess.run(
                    plan.argv,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    cwd=plan.cwd,
                    env={**os.environ, **plan.env},
                    timeout=180,
                    check=False,
                )
            assert run.returncode == 0, f"loadgen against {backend} failed:\n{log.read_text()[-3000:]}"
        time.sleep(5)  # a last scrape of the servers after the final run

        empty, tolerated = [], []
        for board, panel, query in generator.panel_queries():
            if _query(stack, query.expr.replace("$__rate_interval", RATE_WINDOW)):
                continue
            line = f"{board} / {panel}: {query.expr}"
            (tolerated if query.may_be_empty else empty).append(f"{line} ({query.may_be_empty})")
        assert not empty, "panel queries without data:\n" + "\n".join(empty)
        print("\nempty, as documented:\n" + "\n".join(tolerated))
        # The client-side series carry each backend that was loaded.
        loaded = _query(stack, "sum by (backend) (imgbench_requests_total)")
        backends = {r["metric"]["backend"] for r in loaded}
        assert set(RUNS) <= backends
