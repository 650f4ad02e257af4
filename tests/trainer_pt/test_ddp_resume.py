"""A lost node of a DDP run, then a restart: two torchrun nodes on 127.0.0.1 (gloo, one process each:
the TrainJob's 2 nodes × 1 process) train with ``--resume auto``; once epoch 1 is checkpointed, one
node (its torchrun agent and trainer process, as when a pod is lost) is SIGKILLed inside epoch 2; the
other node fails on its own (its collectives lose their peer) within a bound; both nodes are started
again with the same command and finish from the epoch-1 checkpoint: no finished epoch lost or repeated.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import RECIPE, trainer_env

from imgbench.training_log import read_epochs

pytestmark = pytest.mark.slow

EPOCHS = 3
NODES = 2
LOST = 1  # the node whose pod is lost
FAIL_WITHIN = 60.0  # seconds the surviving node may take to notice; then the test fails (and kills it)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _node_command(node: int, port: int, data: Path, run_dir: Path) -> list[str]:
    # What the TrainJob/PyTorchJob pods run: torchrun with a static rendezvous, the same flags every time.
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nnodes={NODES}", "--nproc-per-node=1",
        f"--node-rank={node}", "--master-addr=127.0.0.1", f"--master-port={port}",
        "-m", "trainer_pt", "train", "--data-path", str(data), *RECIPE, "--epochs", str(EPOCHS),
        "--output-dir", str(run_dir), "--no-export", "--no-progress", "--resume", "auto",
    ]  # fmt: skip


def _start_nodes(port: int, data: Path, run_dir: Path, logs: list[Path]) -> list[subprocess.Popen[bytes]]:
    nodes = []
    for node, log in enumerate(logs):
        command = _node_command(node, port, data, run_dir)
        with log.open("ab") as out:
            nodes.append(
                subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=trainer_env(), cwd="/")
            )
    return nodes


def _children(pid: int) -> list[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        return [int(child) for task in tasks for child in (task / "children").read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def _kill_node(agent: subprocess.Popen[bytes]) -> None:
    """Lose the node as a pod is lost: SIGKILL its torchrun agent and the trainer process under it (in
    a session of its own, so the agent's process group does not hold it)."""
    for pid in [agent.pid, *_children(agent.pid)]:
        with contextlib.suppress(ProcessLookupError):  # exited already
            os.kill(pid, signal.SIGKILL)
    agent.wait(timeout=30)


def _wait_for(condition: Callable[[], bool], nodes: list[subprocess.Popen[bytes]], what: str) -> None:
    deadline = time.monotonic() + 300
    while not condition():
        exited = [n.returncode for n in nodes if n.poll() is not None]
        assert not exited, f"a node exited (codes {exited}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within 300 s"
        time.sleep(0.02)  # a training step takes longer: the kill lands inside epoch 2


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_a_lost_node_resumes_from_the_last_epoch(digits_small: Path, tmp_path: Path) -> None:
    run_dir, port = tmp_path / "run", _free_port()
    logs = [tmp_path / f"node{node}.log" for node in range(NODES)]
    train_log = run_dir / "train.log"
    nodes = _start_nodes(port, digits_small, run_dir, logs)
    try:
        # Rank 0 logs the start of epoch 2 after writing epoch 1's figures and checkpoint.
        _wait_for(lambda: f"starting epoch 2/{EPOCHS}" in _text(train_log), nodes, "epoch 2")
        _kill_node(nodes[LOST])
        survivor = nodes[1 - LOST]
        try:
            code = survivor.wait(timeout=FAIL_WITHIN)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the surviving node still runs {FAIL_WITHIN} s after its peer was lost")
        assert code != 0, "the surviving node must fail, so that its pod is restarted too"
    finally:
        for node in nodes:
            _kill_node(node)
    first = read_epochs(run_dir)
    assert [r.epoch for r in first] == [1], "the kill was meant to land inside epoch 2"
    assert torch.load(run_dir / "checkpoint_last.pt", weights_only=False)["epoch"] == 1
    assert f"--resume auto: no checkpoint in {run_dir}; starting a new run" in _text(logs[0])

    nodes = _start_nodes(port, digits_small, run_dir, logs)  # the same command, both nodes
    try:
        for node, process in enumerate(nodes):
            assert process.wait(timeout=300) == 0, f"node {node}:\n{_text(logs[node])[-3000:]}"
    finally:
        for node in nodes:
            _kill_node(node)
    records = read_epochs(run_dir)
    assert [r.epoch for r in records] == list(range(1, EPOCHS + 1)), "every epoch exactly once"
    assert records[0] == first[0], "epoch 1 was not trained again"
    assert f"--resume auto: resuming from {run_dir / 'checkpoint_last.pt'}" in _text(logs[0])
    log = _text(train_log)
    assert "epoch 1 complete" in log and log.count(f"starting epoch 1/{EPOCHS}") == 1, log[-3000:]
    state = torch.load(run_dir / "checkpoint_last.pt", weights_only=False)
    assert state["epoch"] == EPOCHS and state["args"]["world_size"] == NODES
