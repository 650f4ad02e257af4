"""Prometheus's native configuration: the same scrape jobs as deploy/prometheus/prometheus.yml,
pointed at 127.0.0.1 and this stack's ports."""

from __future__ import annotations

from pathlib import Path

import yaml

from imgbench import servers
from imgbench.atomic import atomic_write_text
from imgbench.paths import project_root
from imgbench.ports import LOOPBACK
from imgbench.stack.ports import PortMap

ScrapeJob = tuple[str, str, str]
"""(service, port name, metrics path)"""
SUPPORT_SCRAPE_JOBS: dict[str, ScrapeJob] = {
    "loadgen": ("loadgen", "metrics", "/metrics"),
    "pushgateway": ("pushgateway", "http", "/metrics"),
    "prometheus": ("prometheus", "http", "/metrics"),
}


def scrape_jobs() -> dict[str, ScrapeJob]:
    """job name -> (service, port name, metrics path): each registered model server's, then the
    support services'; shared with the container configuration (deploy/prometheus/prometheus.yml)."""
    model_servers = {
        spec.job: (name, spec.metrics_port, spec.metrics_path) for name, spec in servers.SERVERS.items()
    }
    return {**model_servers, **SUPPORT_SCRAPE_JOBS}


SCRAPE_JOBS: dict[str, ScrapeJob] = scrape_jobs()
"""``scrape_jobs()`` at import."""
NATIVE_SCRAPE_INTERVAL = "2s"  # native runs are short; a 15 s default would miss most of them


def native_config(ports: PortMap, rule_files: list[Path]) -> dict[str, object]:
    scrape_configs: list[dict[str, object]] = []
    for job, (service, port_name, metrics_path) in scrape_jobs().items():
        job_config: dict[str, object] = {
            "job_name": job,
            "metrics_path": metrics_path,
            "static_configs": [{"targets": [f"{LOOPBACK}:{ports[service][port_name]}"]}],
        }
        if job == "pushgateway":
            # Pushed series carry their own job/instance labels; keep them.
            job_config["honor_labels"] = True
        scrape_configs.append(job_config)
    return {
        "global": {
            "scrape_interval": NATIVE_SCRAPE_INTERVAL,
            "evaluation_interval": NATIVE_SCRAPE_INTERVAL,
            "external_labels": {"deployment": "native"},
        },
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": scrape_configs,
    }


def write_native_config(workdir: Path, ports: PortMap) -> Path:
    rules_dir = project_root() / "deploy" / "prometheus" / "rules"
    rule_files = sorted(rules_dir.glob("*.yml")) if rules_dir.is_dir() else []
    path = workdir / "prometheus.yml"
    atomic_write_text(path, yaml.safe_dump(native_config(ports, rule_files), sort_keys=False))
    return path
