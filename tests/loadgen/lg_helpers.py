"""Helpers of the load generator's tests: free ports, server processes, headless loadgen runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.paths import project_root

ROOT = project_root()
PYTHON = sys.executable  # the loadgen venv's
MODEL = "pt_centroid"
HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listened on {port} after {timeout} s: {log.read_text()[-2000:]}")


@dataclass
class Server:
    """A server process on a fixed port that a test may kill and start again."""

    argv: list[str]
    port: int
    log: Path
    process: subprocess.Popen | None = None
    pids: list[int] = field(default_factory=list)

    def start(self) -> Server:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.pids.append(self.process.pid)
        wait_for_port(self.port, self.process, self.log)
        return self

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass
class LoadRun:
    returncode: int
    output: str
    results: dict | None
    csv: str | None

    def row(self, index: int = 0) -> dict:
        assert self.results is not None, self.output[-3000:]
        return self.results["points"][index]


def loadgen_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "loadgen", *args]


def run_loadgen(
    tmp_path: Path, *args: str, run_id: str = "run", timeout: float = 120, env: dict[str, str] | None = None
) -> LoadRun:
    """``python -m loadgen --headless ...`` to completion; its results if it wrote any."""
    results_dir = tmp_path / "results"
    argv = loadgen_argv(
        "--headless", "--results-dir", str(results_dir), "--run-id", run_id, "--metrics-port", "0",
        "--only-summary", *args,
    )  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}
    )
    json_path, csv_path = results_dir / f"{run_id}.json", results_dir / f"{run_id}.csv"
    return LoadRun(
        done.returncode,
        done.stdout + done.stderr,
        json.loads(json_path.read_text()) if json_path.exists() else None,
        csv_path.read_text() if csv_path.exists() else None,
    )
