"""Resident memory of a server's whole process tree (TorchServe's JVM and its Python workers, Triton
and its python-backend stubs, the stand-in), and the host's load average, sampled every few seconds
on a thread of the soak's own process (psutil), with wall-clock times.

    >>> import os
    >>> sampler = TreeSampler(os.getpid(), interval_s=60)
    >>> wall, rss, load = sampler.sample()
    >>> sum(rss.values()) > 0
    True
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from pathlib import Path

import psutil

from imgbench.bench.soak_windows import MemorySample


def describe(process: psutil.Process) -> str:
    """A short name for a process: its executable, and for an interpreter the module or script it runs
    (``python -m ts.model_service_worker``), so the JSON tells a worker from its frontend."""
    try:
        argv = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return "?"
    if not argv:
        return process.name()
    words = [Path(argv[0]).name]
    if words[0].startswith(("python", "java")):
        rest = argv[1:]
        if "-m" in rest and rest.index("-m") + 1 < len(rest):
            words.append(rest[rest.index("-m") + 1])
        else:
            words += [Path(a).name for a in rest if not a.startswith("-")][:1]
    return " ".join(words)[:80]


class TreeSampler:
    """Samples ``root_pid`` and all its descendants every ``interval_s`` until ``stop()``."""

    def __init__(self, root_pid: int, interval_s: float = 5.0) -> None:
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.samples: list[tuple[float, dict[str, int], float]] = []
        """(wall time, "<pid> <name>" -> RSS bytes, 1-minute load average)."""
        self.names: dict[int, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-rss", daemon=True)

    def sample(self) -> tuple[float, dict[str, int], float]:
        rss: dict[str, int] = {}
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.root_pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    memory = process.memory_info().rss
                    if process.pid not in self.names:
                        self.names[process.pid] = describe(process)
                    rss[f"{process.pid} {self.names[process.pid]}"] = memory
        return time.time(), rss, os.getloadavg()[0]

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.sample())
            self._stop.wait(self.interval_s)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 10)

    def relative_to(self, start_wall: float) -> list[MemorySample]:
        """The samples with times in seconds from ``start_wall`` (the load's start)."""
        return [
            MemorySample(t_s=round(wall - start_wall, 3), rss_bytes=rss, load_avg_1m=round(load, 2))
            for wall, rss, load in self.samples
        ]
