"""deploy/prometheus: promtool checks and rule unit tests, and agreement with the native stack's
scrape jobs (imgbench/stack/prometheus_config.py), the ports (imgbench/ports.py) and the metric
names (imgbench/observability.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from deploy_support import DEPLOY, run, tool

from imgbench import observability as obs
from imgbench.ports import DEFAULT_PORTS
from imgbench.stack import prometheus_config
from imgbench.stack.ports import default_port_map

PROMETHEUS = DEPLOY / "prometheus"
CONFIG = PROMETHEUS / "prometheus.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool() -> str:
    return tool("promtool", "run scripts/setup.sh (Debian package 'prometheus')")


def _config() -> dict:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def _jobs() -> dict[str, dict]:
    return {job["job_name"]: job for job in _config()["scrape_configs"]}


def _target(job: dict) -> tuple[str, int]:
    """(host, port) a job scrapes: its first static target or DNS name."""
    if "static_configs" in job:
        host, port = job["static_configs"][0]["targets"][0].rsplit(":", 1)
        return host, int(port)
    dns = job["dns_sd_configs"][0]
    return dns["names"][0], int(dns["port"])


def test_promtool_check_config_with_the_rules(tmp_path: Path) -> None:
    # The container path of the rules (/etc/prometheus/rules) does not exist here: point a copy at
    # the repository's rules so that check config also loads and checks them.
    config = _config()
    config["rule_files"] = [str(p) for p in RULE_FILES]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = run([promtool(), "check", "config", str(copy)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULE_FILES)} rule files found" in result.stdout + result.stderr

    as_written = run([promtool(), "check", "config", str(CONFIG)])
    assert as_written.returncode == 0, as_written.stdout + as_written.stderr


def test_promtool_check_rules() -> None:
    assert RULE_FILES, "no rule files in deploy/prometheus/rules"
    result = run([promtool(), "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests() -> None:
    """Alerts fire on synthetic breaching series and stay silent on healthy and idle ones."""
    assert RULE_TESTS, "no rule unit tests in deploy/prometheus/tests"
    result = run([promtool(), "test", "rules", *map(str, RULE_TESTS)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_rule_unit_tests_cover_every_alert() -> None:
    alerts = {
        rule["alert"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    tested_firing: set[str] = set()
    tested_silent: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (tested_firing if check["exp_alerts"] else tested_silent).add(check["alertname"])
    assert alerts, "no alert rules"
    assert alerts <= tested_firing, f"alerts never shown to fire: {sorted(alerts - tested_firing)}"
    assert alerts <= tested_silent, f"alerts never shown to stay silent: {sorted(alerts - tested_silent)}"


def test_scrape_jobs_match_the_native_configuration() -> None:
    jobs = _jobs()
    assert set(jobs) == set(prometheus_config.SCRAPE_JOBS), (
        "deploy/prometheus/prometheus.yml and imgbench/stack/prometheus_config.py SCRAPE_JOBS "
        f"name different jobs: {sorted(jobs)} vs {sorted(prometheus_config.SCRAPE_JOBS)}"
    )
    for name, (service, port_name, metrics_path) in prometheus_config.SCRAPE_JOBS.items():
        job = jobs[name]
        assert job.get("metrics_path", "/metrics") == metrics_path, name
        host, port = _target(job)
        assert port == DEFAULT_PORTS[service][port_name], f"{name}: port {port}"
        # Container host names are the compose service / Kubernetes Service names.
        assert host == ("localhost" if service == "prometheus" else service), f"{name}: host {host}"
    assert jobs["pushgateway"].get("honor_labels") is True


def test_native_prometheus_loads_the_same_rule_files(tmp_path: Path) -> None:
    path = prometheus_config.write_native_config(tmp_path, default_port_map())
    native = yaml.safe_load(path.read_text())
    assert sorted(Path(p).resolve() for p in native["rule_files"]) == [p.resolve() for p in RULE_FILES]


def _rule_exprs() -> list[str]:
    return [
        rule["expr"]
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def test_rules_use_the_shared_metric_names_and_slo_edge() -> None:
    text = "\n".join(_rule_exprs())
    for metric in (obs.REQUEST_LATENCY, obs.REQUESTS, obs.REQUEST_ERRORS, obs.INCORRECT_ANSWERS):
        assert metric in text, f"no rule uses {metric}"
    # Exporter names only: recording-rule names (level:metric:operation) have colons around them.
    used = set(re.findall(r"(?<![:\w])imgbench_[a-z_]+(?![:\w])", text))
    known = {obs.REQUESTS, obs.REQUEST_ERRORS, obs.INCORRECT_ANSWERS, obs.IMAGES, obs.USERS, obs.TARGET_RATE}
    known |= {f"{obs.REQUEST_LATENCY}_{suffix}" for suffix in ("bucket", "count", "sum")}
    assert used <= known, f"rules use names imgbench/observability.py does not define: {used - known}"
    edges = {float(v) for v in re.findall(r'le="([0-9.]+)"', text)}
    assert edges == {obs.DEFAULT_SLO_SECONDS}, edges
    assert obs.DEFAULT_SLO_SECONDS in obs.latency_buckets(), "the SLO must be a bucket edge"


@pytest.mark.parametrize("job", ["torchserve", "triton", "tfserving"])
def test_servers_are_discovered_per_replica(job: str) -> None:
    """Scaled servers are scraped one by one (DNS A records: compose replicas, headless Services)."""
    dns = _jobs()[job]["dns_sd_configs"][0]
    assert dns["type"] == "A"
