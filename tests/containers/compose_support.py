"""Driving the real compose stack from the containers suite: `docker compose` with the user-facing
file, the offline override (local stand-ins for the images that cannot be pulled here) and a per-test
override (free host ports, the smallest recipe, a short TorchServe key lifetime)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
OFFLINE_FILE = ROOT / "deploy" / "compose" / "offline.yml"
TORCHSERVE_CONFIG = ROOT / "services" / "serving" / "torchserve" / "config.properties"
ONE_SHOT = ("volumes-init", "dataset", "trainer-pt", "trainer-tf")
SERVERS = ("torchserve", "tfserving", "triton")
# The published container ports the tests reach from the host (the rest stay on the compose network).
HOST_PORTS = {
    "torchserve": (7070,),
    "tfserving": (8500, 8501),
    "triton": (8000, 8001, 8002),
    "prometheus": (9090,),
    "pushgateway": (9091,),
    "loadgen": (8089, 9646),
}


def docker() -> str:
    """Debian's docker client (20.10, BuildKit built in) before any other on PATH."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).exists():
            return candidate
    raise FileNotFoundError("docker is not installed: scripts/setup.sh (scripts/containers.sh install)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ComposeStack:
    project: str
    workdir: Path
    key_lifetime_min: float = 0.5
    ports: dict[str, dict[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ports = {svc: {port: free_port() for port in ports} for svc, ports in HOST_PORTS.items()}
        self.override = self.workdir / "test-override.yml"
        config = TORCHSERVE_CONFIG.read_text(encoding="utf-8")
        assert "token_expiration_min=1440" in config
        short = config.replace("token_expiration_min=1440", f"token_expiration_min={self.key_lifetime_min}")
        (self.workdir / "torchserve.properties").write_text(short, encoding="utf-8")
        services: dict[str, dict] = {
            svc: {"ports": [f"127.0.0.1:{host}:{container}" for container, host in ports.items()]}
            for svc, ports in self.ports.items()
        }
        services["torchserve"]["volumes"] = [
            "model-repository:/models:ro",
            "torchserve-auth:/home/model-server/auth",
            f"{self.workdir / 'torchserve.properties'}:/home/model-server/config.properties:ro",
        ]
        text = yaml.safe_dump({"services": services}, sort_keys=False)
        # `!override` replaces the lists (ports, volumes) instead of appending to them.
        text = text.replace("  ports:\n", "  ports: !override\n").replace(
            "  volumes:\n", "  volumes: !override\n"
        )
        self.override.write_text(text, encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"/usr/bin:{os.environ.get('PATH', '')}",
            "COMPOSE_PROJECT_NAME": self.project,
            "IMGBENCH_EPOCHS": "1",
            # After 1 epoch the model is unsettled and its int8 TFLite agreement is noise (85-99% seen);
            # the gate itself is tested in the trainers' suites. Recorded here, not gated.
            "IMGBENCH_QUANTIZED_MIN_AGREEMENT": "0",
            "IMGBENCH_IF_EXISTS": "skip",
        }

    def compose(
        self, *args: str, timeout: float = 900, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = [
            docker(), "compose", "-p", self.project,
            "-f", str(COMPOSE_FILE), "-f", str(OFFLINE_FILE), "-f", str(self.override), *args,
        ]  # fmt: skip
        result = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"`docker compose {' '.join(args)}` exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}\n{self.failure_context()}"
            )
        return result

    def containers(self) -> list[dict]:
        """`docker compose ps -a` as records: Service, State, ExitCode, Health, Name."""
        out = self.compose("ps", "-a", "--format", "json").stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def by_service(self) -> dict[str, dict]:
        return {c["Service"]: c for c in self.containers()}

    def logs(self, service: str, tail: int | str = 40) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), service, check=False).stdout

    def failure_context(self, services: tuple[str, ...] | None = None) -> str:
        """Each named (default: every unhealthy or failed) service's state and log tail."""
        parts: list[str] = []
        records: list[dict] = []
        try:
            raw = subprocess.run(
                [docker(), "compose", "-p", self.project, "ps", "-a", "--format", "json"],
                cwd=ROOT, env=self.env, capture_output=True, text=True, check=False, timeout=60,
            ).stdout.strip()  # fmt: skip
            records = (
                json.loads(raw) if raw.startswith("[") else [json.loads(x) for x in raw.splitlines() if x]
            )
        except (ValueError, subprocess.TimeoutExpired):
            pass
        for record in records:
            name = record.get("Service", "?")
            bad = record.get("Health") not in ("", "healthy") or (
                record.get("State") == "exited" and record.get("ExitCode") not in (0, None)
            )
            if (services and name in services) or (not services and bad):
                tail = subprocess.run(
                    [docker(), "logs", "--tail", "40", record["Name"]],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                parts.append(
                    f"--- service {name}: state={record.get('State')} health={record.get('Health')} "
                    f"exit={record.get('ExitCode')}\n{tail.stdout[-2500:]}{tail.stderr[-2500:]}"
                )
        return "\n".join(parts)

    def wait_healthy(self, services: tuple[str, ...], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            states = self.by_service()
            pending = [s for s in services if states.get(s, {}).get("Health") != "healthy"]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"not healthy after {timeout_s:.0f} s: {pending}\n{self.failure_context(tuple(pending))}"
                )
            time.sleep(5)

    def volume(self, name: str) -> str:
        return f"{self.project}_{name}"

    def read_volume(self, volume: str, path: str) -> str:
        """A file of a named volume, read by a throwaway container of the local base image."""
        base = os.environ.get("IMGBENCH_LOCAL_BASE", "imgbench-local/python:3.11-bookworm")
        result = subprocess.run(
            [docker(), "run", "--rm", "--network", "none", "-v", f"{self.volume(volume)}:/v:ro", base,
             "cat", f"/v/{path}"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"cannot read {path} from volume {volume}: {result.stderr}"
        return result.stdout

    def write_volume(self, volume: str, python_source: str) -> None:
        """Run ``python_source`` as uid 1000 in a throwaway container with the volume at /v (read-write)."""
        base = os.environ.get("IMGBENCH_LOCAL_BASE", "imgbench-local/python:3.11-bookworm")
        result = subprocess.run(
            [docker(), "run", "--rm", "--network", "none", "-u", "1000:1000",
             "-v", f"{self.volume(volume)}:/v", base, "python", "-c", python_source],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"cannot write to volume {volume}: {result.stderr}"

    def list_volume(self, volume: str, path: str) -> list[str]:
        base = os.environ.get("IMGBENCH_LOCAL_BASE", "imgbench-local/python:3.11-bookworm")
        result = subprocess.run(
            [docker(), "run", "--rm", "--network", "none", "-v", f"{self.volume(volume)}:/v:ro", base,
             "find", f"/v/{path}", "-type", "f"],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"cannot list {path} in volume {volume}: {result.stderr}"
        return sorted(line.removeprefix("/v/") for line in result.stdout.split())

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that still exist."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {}
        for kind, argv in {
            "containers": [docker(), "ps", "-aq", "--filter", label],
            "networks": [docker(), "network", "ls", "-q", "--filter", label],
            "volumes": [docker(), "volume", "ls", "-q", "--filter", label],
        }.items():
            found[kind] = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.split()
        return found
