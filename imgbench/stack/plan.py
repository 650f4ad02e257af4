"""The types every launch builder shares: what a builder reads (``StackContext``) and what it returns
(``LaunchPlan``). Builders import only this module, so ``imgbench.stack.services``, which collects
them, can import the builders without a cycle."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from imgbench.errors import StackError
from imgbench.stack.ports import PortMap
from imgbench.stack.readiness import Probe


@dataclass(frozen=True)
class StackContext:
    """What every builder may read: where to write, which ports, which model repository."""

    run_dir: Path
    ports: PortMap
    model_repository: Path | None = None
    options: Mapping[str, str] = field(default_factory=dict)

    def service_dir(self, service: str) -> Path:
        path = self.run_dir / service
        path.mkdir(parents=True, exist_ok=True)
        return path


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    ready: Probe
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    startup_timeout_s: float = 60.0
    stop_timeout_s: float = 15.0
    configure: Callable[[], None] | None = None
    """Run once the service is ready (e.g. TorchServe's model registered again with a ready config's
    batching and workers); an exception stops the service and fails its start."""


Builder = Callable[[StackContext], LaunchPlan]


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    description: str
    build: Builder


def require_executable(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise StackError(f"'{name}' is not installed: {hint}")
    return path
