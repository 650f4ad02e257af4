"""deploy/grafana: the committed dashboards are what the generator writes now, every panel query is
valid PromQL over the shared metric names, and provisioning points where compose and Kubernetes
mount the files."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import yaml
from deploy_support import DEPLOY, run, tool

from imgbench import observability as obs

GRAFANA = DEPLOY / "grafana"


def test_committed_dashboards_are_current(grafana_generator: ModuleType) -> None:
    for spec in grafana_generator.DASHBOARDS:
        path = GRAFANA / "dashboards" / spec.filename
        assert path.is_file(), f"{path} missing: run .venv/core/bin/python deploy/grafana/generate.py"
        assert path.read_text(encoding="utf-8") == grafana_generator.render(spec), (
            f"{path.name} is stale or hand-edited: run .venv/core/bin/python deploy/grafana/generate.py"
        )
    on_disk = {p.name for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == {spec.filename for spec in grafana_generator.DASHBOARDS}, (
        "remove dashboards nobody generates"
    )


def test_check_mode_exits_zero(grafana_generator: ModuleType) -> None:
    assert grafana_generator.main(["--check"]) == 0


def test_panels_query_the_provisioned_datasource(grafana_generator: ModuleType) -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    for spec in grafana_generator.DASHBOARDS:
        board = json.loads((GRAFANA / "dashboards" / spec.filename).read_text())
        assert board["uid"] == spec.uid and board["editable"] is False
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{spec.uid}: duplicate panel ids"
        for panel in panels:
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid and target["expr"], panel["title"]


def test_every_query_is_valid_promql(grafana_generator: ModuleType, tmp_path: Path) -> None:
    promtool = tool("promtool", "run scripts/setup.sh (Debian package 'prometheus')")
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": query.expr.replace("$__rate_interval", "1m")}
        for i, (_, _, query) in enumerate(grafana_generator.panel_queries())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}), encoding="utf-8")
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_tf_serving_batching_metrics_are_grouped_by_the_labels_the_real_server_exports(
    grafana_generator: ModuleType,
) -> None:
    """TF Serving's batching_session metrics (batching_session.cc, batching_util.h): queuing_latency has
    only thread_pool_name, processed_batch_size no label at all; grouping them by model_name would draw
    one unnamed series for the real server."""
    queries = [query.expr for _, _, query in grafana_generator.panel_queries()]
    queue = [q for q in queries if "batching_session:queuing_latency" in q]
    batch = [q for q in queries if "batching_session:processed_batch_size" in q]
    assert queue and batch
    assert all("thread_pool_name" in q and "model_name" not in q for q in queue), queue
    assert all("model_name" not in q for q in batch), batch


def test_required_panels_exist(grafana_generator: ModuleType) -> None:
    exprs = "\n".join(query.expr for _, _, query in grafana_generator.panel_queries())
    for quantile in ("0.5", "0.9", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (backend, le) (rate({obs.REQUEST_LATENCY}_bucket" in exprs
        )
    for metric in (obs.REQUESTS, obs.REQUEST_ERRORS, obs.INCORRECT_ANSWERS, obs.USERS, obs.TARGET_RATE):
        assert metric in exprs, f"no panel shows {metric}"
    for server_metric in (
        "ts_inference_latency_microseconds",
        "ts_queue_latency_microseconds",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        ":tensorflow:serving:request_latency",
    ):
        assert server_metric in exprs, f"no panel shows {server_metric}"
    assert f'le="{obs.DEFAULT_SLO_SECONDS:g}"' in exprs


def test_provisioning_matches_the_mounts(compose: dict) -> None:
    providers = yaml.safe_load((GRAFANA / "provisioning/dashboards/imgbench.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./deploy/grafana/dashboards:{path}:ro" in mounts
    home = compose["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == path and (GRAFANA / "dashboards" / Path(home).name).is_file()
