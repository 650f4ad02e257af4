"""Start, watch and stop native services. State lives in ``<run_dir>/stack.json`` so that
`imgbench stack down` in another shell stops exactly what `stack up` started, and nothing else."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psutil

from imgbench.atomic import atomic_write_text
from imgbench.errors import StackError
from imgbench.stack.ports import PortMap, default_port_map, ensure_ports_free
from imgbench.stack.services import LaunchPlan, StackContext, get_spec

log = logging.getLogger(__name__)

STATE_FILE = "stack.json"
LOG_TAIL_LINES = 30
POLL_INTERVAL_S = 0.25


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int
    running: bool
    ports: dict[str, int]
    log: Path


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            return "".join(deque(handle, maxlen=lines))
    except FileNotFoundError:
        return "(no log written)"


def _same_process(pid: int, create_time: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the one we started (PIDs get reused), else None."""
    try:
        process = psutil.Process(pid)
        if abs(process.create_time() - create_time) > 1.0 or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.NoSuchProcess:
        return None


class Stack:
    """Native services of one run directory.

    ``ports`` defaults to the standard ports; tests pass ``free_port_map()``. Used as a context
    manager, everything this object started is stopped on exit, also when the body raised.
    """

    def __init__(
        self,
        run_dir: Path,
        ports: PortMap | None = None,
        model_repository: Path | None = None,
        options: dict[str, str] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = self.run_dir / STATE_FILE
        state = self._read_state()
        # A stack with services recorded in this folder keeps its ports; a new one takes the given ones.
        recorded_ports = state.get("ports") if state.get("services") else None
        self.ports: PortMap = recorded_ports or ports or default_port_map()
        self.model_repository = model_repository or (
            Path(state["model_repository"]) if state.get("model_repository") else None
        )
        self.options = dict(options or state.get("options") or {})
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    # -- state -----------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        if not self.state_path.exists():
            return {}
        try:
            return json.loads(self.state_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise StackError(f"stack state {self.state_path} is corrupt ({exc.msg}); remove it") from None

    def _write_state(self, services: dict[str, dict]) -> None:
        state = {
            "ports": self.ports,
            "model_repository": str(self.model_repository) if self.model_repository else None,
            "options": self.options,
            "services": services,
        }
        atomic_write_text(self.state_path, json.dumps(state, indent=2) + "\n")

    def _services_state(self) -> dict[str, dict]:
        return dict(self._read_state().get("services", {}))

    def context(self) -> StackContext:
        return StackContext(self.run_dir, self.ports, self.model_repository, self.options)

    # -- up --------------------------------------------------------------------------------------
    def up(self, names: list[str]) -> None:
        """Start ``names`` in order and wait until each is ready.

        If one fails, the services this call started are stopped again and ``StackError`` says
        which service failed, why, and where its log is.
        """
        started: list[str] = []
        try:
            for name in names:
                if self._start(name):
                    started.append(name)
        except BaseException:
            self.down(started)
            raise

    def _start(self, name: str) -> bool:
        spec = get_spec(name)
        services = self._services_state()
        if name in services and _same_process(services[name]["pid"], services[name]["create_time"]):
            log.info("%s is already running (pid %s)", name, services[name]["pid"])
            return False
        ensure_ports_free(name, self.ports.get(name, {}))
        plan = spec.build(self.context())
        log_path = self.run_dir / "logs" / f"{name}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        process = self._spawn(plan, log_path)
        services[name] = {
            "pid": process.pid,
            "create_time": psutil.Process(process.pid).create_time(),
            "argv": plan.argv,
            "log": str(log_path),
            "ports": self.ports.get(name, {}),
            "stop_timeout_s": plan.stop_timeout_s,
        }
        self._children[name] = process
        self._write_state(services)
        try:
            self._wait_ready(name, plan, process, log_path)
            if plan.configure is not None:
                plan.configure()
        except BaseException:
            self.down([name])
            raise
        log.info("%s is ready (pid %s, log %s)", name, process.pid, log_path)
        return True

    @staticmethod
    def _spawn(plan: LaunchPlan, log_path: Path) -> subprocess.Popen[bytes]:
        with log_path.open("ab") as log_file:
            try:
                return subprocess.Popen(
                    plan.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=plan.cwd,
                    env={**os.environ, **plan.env},
                    # Own process group: stopping the service also stops the workers it forks.
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"cannot start {plan.argv[0]}: {exc.strerror}") from None

    @staticmethod
    def _wait_ready(name: str, plan: LaunchPlan, process: subprocess.Popen[bytes], log_path: Path) -> None:
        deadline = time.monotonic() + plan.startup_timeout_s
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise StackError(
                    f"{name} exited with code {process.returncode} before it was ready; "
                    f"log {log_path}, last lines:\n{log_tail(log_path)}"
                )
            if plan.ready():
                return
            time.sleep(POLL_INTERVAL_S)
        raise StackError(
            f"{name} was not ready after {plan.startup_timeout_s:.0f} s; log {log_path}, last lines:\n"
            f"{log_tail(log_path)}"
        )

    # -- down ------------------------------------------------------------------------------------
    def down(self, names: list[str] | None = None) -> list[str]:
        """Stop ``names`` (default: every recorded service), newest first. Returns those stopped."""
        services = self._services_state()
        targets = [n for n in reversed(list(services)) if names is None or n in names]
        stopped = []
        for name in targets:
            entry = services.pop(name)
            if self._stop(name, entry):
                stopped.append(name)
            self._write_state(services)
        return stopped

    def _stop(self, name: str, entry: dict) -> bool:
        process = _same_process(entry["pid"], entry["create_time"])
        child = self._children.pop(name, None)
        if process is None:
            if child is not None:
                child.poll()  # reap
            return False
        # Whatever the service forked, found before the leader goes away and orphans them.
        family = [process, *process.children(recursive=True)]
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(entry["pid"], signal.SIGTERM)
        for member in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                member.terminate()
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=entry.get("stop_timeout_s", 15.0))
        _, alive = psutil.wait_procs(family, timeout=entry.get("stop_timeout_s", 15.0))
        for member in alive:
            log.warning("%s: pid %s ignored SIGTERM; killing it", name, member.pid)
            with contextlib.suppress(psutil.NoSuchProcess):
                member.kill()
        psutil.wait_procs(alive, timeout=5.0)
        if child is not None:
            child.poll()
        return True

    # -- status ----------------------------------------------------------------------------------
    def status(self) -> list[ServiceStatus]:
        return [
            ServiceStatus(
                name=name,
                pid=entry["pid"],
                running=_same_process(entry["pid"], entry["create_time"]) is not None,
                ports=entry.get("ports", {}),
                log=Path(entry["log"]),
            )
            for name, entry in self._services_state().items()
        ]

    def url(self, service: str, port_name: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service][port_name]}{path}"

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()
