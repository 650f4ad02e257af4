"""Helpers of the deploy checks: paths, tools, kustomize rendering, the dashboard generator.
Nothing here needs Docker, a cluster or Grafana."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
VENV_BIN = Path(sys.executable).parent


def tool(name: str, hint: str) -> str:
    """Path of ``name`` (the running venv's bin/ first), or skip the test saying how to get it."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"'{name}' is not installed: {hint}")
    return found


def run(argv: list[str], cwd: Path = ROOT, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def load_generator_module() -> ModuleType:
    """deploy/grafana/generate.py, imported by path (deploy/ is not a package)."""
    path = DEPLOY / "grafana" / "generate.py"
    spec = importlib.util.spec_from_file_location("imgbench_grafana_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def render_kustomization(path: Path) -> list[dict]:
    kubectl = tool("kubectl", "install kubectl >= 1.27 (kustomize v5 built in)")
    result = run([kubectl, "kustomize", str(path)])
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
