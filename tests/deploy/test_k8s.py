"""deploy/k8s: both kustomizations render, every object validates against the Kubernetes schemas
(unknown fields rejected), and the manifests keep the rules of issue 7: ports from
imgbench/ports.py, pinned images, probes, resources, non-root, headless gRPC Services, management
ports namespace-internal, configuration generated from the files compose mounts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from deploy_support import DEPLOY, K8S, ROOT, run, tool

from imgbench.ports import DEFAULT_PORTS

SERVERS = ("torchserve", "tfserving", "triton")
MANAGEMENT_PORTS = {DEFAULT_PORTS["torchserve"]["management"], DEFAULT_PORTS["torchserve"]["grpc_management"]}
WORKLOAD_KINDS = {"Deployment", "Job", "StatefulSet", "DaemonSet"}


def _by_kind(docs: list[dict], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {
        f"{doc['kind']}/{doc['metadata']['name']}": doc["spec"]["template"]["spec"]
        for doc in docs
        if doc["kind"] in WORKLOAD_KINDS
    }


def _containers(pod: dict) -> list[dict]:
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_rendered_objects_validate_strictly(
    overlay: str, k8s_cpu: list[dict], k8s_gpu: list[dict], tmp_path: Path
) -> None:
    validate = tool("kubernetes-validate", "install the dev extra: scripts/setup.sh core")
    docs = k8s_cpu if overlay == "cpu" else k8s_gpu
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs), encoding="utf-8")
    result = run([validate, "--strict", "--quiet", str(rendered)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output
    assert len(docs) > 30


def test_kustomize_root_renders_the_cpu_base(k8s_cpu: list[dict]) -> None:
    cluster_scoped = {"Namespace", "PriorityClass"}
    assert {doc["metadata"].get("namespace") for doc in k8s_cpu if doc["kind"] not in cluster_scoped} == {
        "imgbench"
    }
    kinds = {doc["kind"] for doc in k8s_cpu}
    assert {"Namespace", "PersistentVolumeClaim", "Job", "Deployment", "Service", "NetworkPolicy"} <= kinds
    assert {"dataset", "trainer-pt", "trainer-tf"} <= set(_by_kind(k8s_cpu, "Job"))
    assert {*SERVERS, "loadgen", "loadgen-worker", "prometheus", "pushgateway", "grafana"} <= set(
        _by_kind(k8s_cpu, "Deployment")
    )
    assert "model-repository" in _by_kind(k8s_cpu, "PersistentVolumeClaim")
    for doc in k8s_cpu:
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "imgbench", doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])
def test_images_pinned(overlay: str, k8s_cpu: list[dict], k8s_gpu: list[dict]) -> None:
    for name, pod in _pod_specs(k8s_cpu if overlay == "cpu" else k8s_gpu).items():
        for container in _containers(pod):
            repository, _, tag = container["image"].rpartition(":")
            assert repository and "/" not in tag and tag != "latest", f"{name}: {container['image']}"


def test_workloads_are_non_root_with_resources(k8s_cpu: list[dict]) -> None:
    for name, pod in _pod_specs(k8s_cpu).items():
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] != 0, name
        assert security["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in _containers(pod):
            where = f"{name}/{container['name']}"
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert container["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), f"{where}: {kind}"


def test_long_running_containers_have_probes(k8s_cpu: list[dict]) -> None:
    for name, deployment in _by_kind(k8s_cpu, "Deployment").items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            assert "livenessProbe" in container, f"{name}: no liveness probe"
            if name != "loadgen-worker":  # no port: nothing routes to a worker
                assert "readinessProbe" in container, f"{name}: no readiness probe"


def test_ports_match_imgbench_ports(k8s_cpu: list[dict]) -> None:
    deployments = _by_kind(k8s_cpu, "Deployment")
    services = _by_kind(k8s_cpu, "Service")
    for name, ports in DEFAULT_PORTS.items():
        if name not in deployments:
            continue
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        declared = {p["containerPort"] for p in container.get("ports", [])}
        assert set(ports.values()) <= declared, f"{name}: container ports {declared} vs {dict(ports)}"
        service_ports = {p["port"] for p in services[name]["spec"]["ports"]}
        assert service_ports <= declared | {5557}, name
        assert set(ports.values()) - MANAGEMENT_PORTS <= service_ports, f"{name}: Service lacks a port"


def test_servers_use_headless_services_and_no_service_exposes_management(k8s_cpu: list[dict]) -> None:
    services = _by_kind(k8s_cpu, "Service")
    for server in SERVERS:
        assert services[server]["spec"]["clusterIP"] == "None", f"{server}: gRPC needs a headless Service"
    for name, service in services.items():
        exposed = {p["port"] for p in service["spec"]["ports"]} | {
            p.get("targetPort") for p in service["spec"]["ports"]
        }
        assert not exposed & (MANAGEMENT_PORTS | {"management", "grpc-management"}), name
        # Nothing leaves the cluster through a Service: no node ports, no load balancers.
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", f"{name}: {service['spec']['type']}"
    # Nor around one: no pod on the node's network or with ports bound on the node.
    for name, pod in _pod_specs(k8s_cpu).items():
        assert not pod.get("hostNetwork"), f"{name}: hostNetwork"
        for container in _containers(pod):
            host_ports = [p for p in container.get("ports", []) if "hostPort" in p]
            assert not host_ports, f"{name}/{container['name']}: hostPort {host_ports}"


def test_network_policy_keeps_management_inside_the_namespace(k8s_cpu: list[dict]) -> None:
    policies = _by_kind(k8s_cpu, "NetworkPolicy")
    deny = policies["default-deny-ingress"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    same_namespace = policies["allow-same-namespace"]["spec"]["ingress"]
    assert same_namespace == [{"from": [{"podSelector": {}}]}]
    for name, policy in policies.items():
        for rule in policy["spec"].get("ingress", []):
            open_to_all = "from" not in rule
            ports = {p["port"] for p in rule.get("ports", [])}
            if open_to_all:
                assert ports, f"{name}: a rule open to every source must name its ports"
                assert not ports & MANAGEMENT_PORTS, f"{name}: opens a management port to everyone"


def test_torchserve_keeps_token_auth_and_shares_the_key(k8s_cpu: list[dict]) -> None:
    deployments = _by_kind(k8s_cpu, "Deployment")
    torchserve = deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in torchserve["env"]}
    assert env["TS_DISABLE_TOKEN_AUTHORIZATION"] == "false"
    mounts = {m["name"]: m for m in torchserve["volumeMounts"]}
    assert mounts["torchserve-auth"]["mountPath"] == torchserve["workingDir"]
    for name in ("loadgen", "loadgen-worker"):
        container = deployments[name]["spec"]["template"]["spec"]["containers"][0]
        mount = {m["name"]: m for m in container["volumeMounts"]}["torchserve-auth"]
        assert mount["readOnly"] is True
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["IMGBENCH_TORCHSERVE_KEY_FILE"] == f"{mount['mountPath']}/key_file.json"


def _configmap_data(docs: list[dict], prefix: str) -> dict[str, str]:
    matches = [
        doc
        for doc in docs
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].rsplit("-", 1)[0] == prefix
    ]
    assert len(matches) == 1, f"one ConfigMap generated as {prefix}-<hash>, found {len(matches)}"
    return matches[0]["data"]


def test_configuration_comes_from_the_files_compose_mounts(k8s_cpu: list[dict]) -> None:
    expected = {
        "prometheus-config": {"prometheus.yml": DEPLOY / "prometheus/prometheus.yml"},
        "prometheus-rules": {p.name: p for p in (DEPLOY / "prometheus/rules").glob("*.yml")},
        "grafana-datasources": {p.name: p for p in (DEPLOY / "grafana/provisioning/datasources").glob("*")},
        "grafana-dashboard-providers": {
            p.name: p for p in (DEPLOY / "grafana/provisioning/dashboards").glob("*")
        },
        "grafana-dashboards": {p.name: p for p in (DEPLOY / "grafana/dashboards").glob("*.json")},
        "torchserve-config": {"config.properties": ROOT / "services/serving/torchserve/config.properties"},
    }
    for configmap, files in expected.items():
        data = _configmap_data(k8s_cpu, configmap)
        assert set(data) == set(files), (
            f"{configmap}: generated from {sorted(data)}, expected {sorted(files)}"
        )
        for key, path in files.items():
            assert data[key] == path.read_text(encoding="utf-8"), (
                f"{configmap}/{key} differs from {path.relative_to(ROOT)}"
                + (
                    "; refresh the copy: cp services/serving/torchserve/config.properties "
                    "deploy/k8s/base/torchserve/config.properties"
                    if configmap == "torchserve-config"
                    else ""
                )
            )


def test_generated_configmaps_are_referenced_with_their_hash(k8s_cpu: list[dict]) -> None:
    generated = {doc["metadata"]["name"] for doc in k8s_cpu if doc["kind"] == "ConfigMap"}
    for name, pod in _pod_specs(k8s_cpu).items():
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in generated, f"{name}: {volume['configMap']['name']}"


def test_gpu_overlay(k8s_gpu: list[dict]) -> None:
    pods = _pod_specs(k8s_gpu)
    for name in ("Job/trainer-pt-gpu", "Job/trainer-tf-gpu", "Deployment/triton"):
        pod = pods[name]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1, name
        assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}, name
        assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), name
    trainer_pt = pods["Job/trainer-pt-gpu"]["containers"][0]["args"]
    assert "--device=cuda" in trainer_pt and "--model=resnet152" in trainer_pt
    trainer_tf_env = {e["name"] for e in pods["Job/trainer-tf-gpu"]["containers"][0]["env"]}
    assert "CUDA_VISIBLE_DEVICES" not in trainer_tf_env
    triton_args = pods["Deployment/triton"]["containers"][0]["args"]
    assert "--exit-on-error=false" not in triton_args, "on the GPU a model that fails to load is an error"
    for name in ("Deployment/torchserve", "Deployment/tfserving", "Deployment/triton"):
        env = {e["name"]: e["value"] for e in pods[name]["initContainers"][0]["env"]}
        waits_for = env["IMGBENCH_MODELS"]
        assert "resnet152" in waits_for and "mobilenet" not in waits_for, name
    for name in ("Deployment/loadgen", "Deployment/loadgen-worker"):
        env = {e["name"]: e.get("value") for e in pods[name]["containers"][0]["env"]}
        assert env["IMGBENCH_MODEL"] == "pt_resnet152", name


def test_cpu_base_requests_no_gpu(k8s_cpu: list[dict]) -> None:
    for name, pod in _pod_specs(k8s_cpu).items():
        for container in _containers(pod):
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), name


def test_overlays_only_patch_with_explicit_targets() -> None:
    """kserve/kubeflow habit (docs/style.md): overlays add patches with a target, never
    patchesStrategicMerge, and pin images in the kustomization."""
    for path in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(path.read_text())
        assert "patchesStrategicMerge" not in spec and "patchesJson6902" not in spec, path
        assert "commonLabels" not in spec, f"{path}: use labels: (no selector changes)"
        for patch in spec.get("patches", []):
            assert patch.get("target"), f"{path}: patch without an explicit target"
    base = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())
    pinned = {image["name"] for image in base["images"]}
    assert {"imgbench/loadgen", "imgbench/torchserve", "nvcr.io/nvidia/tritonserver"} <= pinned


def test_generators_list_every_file() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus/kustomization.yaml").read_text())
    listed = {f for generator in prometheus["configMapGenerator"] for f in generator["files"]}
    for rule in (DEPLOY / "prometheus/rules").glob("*.yml"):
        assert f"rules/{rule.name}" in listed, f"{rule.name} is not in deploy/prometheus/kustomization.yaml"
    grafana = yaml.safe_load((DEPLOY / "grafana/kustomization.yaml").read_text())
    listed = {f for generator in grafana["configMapGenerator"] for f in generator["files"]}
    for dashboard in (DEPLOY / "grafana/dashboards").glob("*.json"):
        assert f"dashboards/{dashboard.name}" in listed, f"{dashboard.name} is not in its kustomization"
