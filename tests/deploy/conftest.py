"""Fixtures of the static deploy checks (tests/deploy): the compose file, rendered kustomize output,
the dashboard generator."""

from __future__ import annotations

from types import ModuleType

import pytest
import yaml
from deploy_support import COMPOSE_FILE, K8S, load_generator_module, render_kustomization


@pytest.fixture(scope="session")
def compose() -> dict:
    """docker-compose.yml as YAML (anchors and merge keys resolved, ${VARS} left as written)."""
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def k8s_cpu() -> list[dict]:
    return render_kustomization(K8S)


@pytest.fixture(scope="session")
def k8s_gpu() -> list[dict]:
    return render_kustomization(K8S / "overlays" / "gpu")


@pytest.fixture(scope="session")
def grafana_generator() -> ModuleType:
    pytest.importorskip("grafana_foundation_sdk", reason="dev extra not installed: scripts/setup.sh core")
    return load_generator_module()
