"""deploy/k8s beyond one machine (issue 15): every overlay renders; built-in objects validate under
``kubernetes-validate --strict``; the CRD objects (TrainJob, PyTorchJob, TFJob, InferenceService,
PodMonitor) and the prometheus-adapter rule validate against their published models with unknown
fields rejected; and the cluster rules hold: an overlay applies after the base, finished training
does not rerun, GPUs go to training first, storage is shared, results persist, UIs stay inside the
namespace, servers scale on their own signals, distributed trainers keep the base's recipe."""

from __future__ import annotations

import functools
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import K8S, ROOT, render_kustomization, run, tool

OVERLAYS = ("local", "registry-example", "gpu", "kubeflow-trainer", "training-operator", "kserve")
CRD_KINDS = {"TrainJob", "PyTorchJob", "TFJob", "InferenceService", "PodMonitor"}
SERVERS = ("torchserve", "tfserving", "triton")
SCHEMAS = Path(__file__).parent / "schemas"
# The recipe: flags that decide what is trained (device, data loader, paths are per deployment).
RECIPE_FLAGS = (
    "--model",
    "--epochs",
    "--image-size",
    "--lr",
    "--crop-scale-min",
    "--hflip",
    "--bn-momentum",
    "--seed",
)
UI_PORTS = {3000, 8089}


@functools.cache
def rendered(overlay: str) -> tuple[dict, ...]:
    path = K8S / "base" if overlay == "base" else K8S / "overlays" / overlay
    return tuple(render_kustomization(path))


def _by_kind(docs: tuple[dict, ...], kind: str) -> dict[str, dict]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _flags(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) if "=" in arg else (arg, "") for arg in args if arg.startswith("--"))


def _trainer_containers(docs: tuple[dict, ...]) -> dict[str, dict]:
    """Every container that runs a trainer, by object: base Jobs, TrainJob, PyTorchJob, TFJob."""
    found: dict[str, dict] = {}
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Job" and doc["metadata"]["name"].startswith("trainer-"):
            found[name] = doc["spec"]["template"]["spec"]["containers"][0]
        elif doc["kind"] == "TrainJob":
            found[name] = doc["spec"]["trainer"]
        elif doc["kind"] in ("PyTorchJob", "TFJob"):
            specs = doc["spec"].get("pytorchReplicaSpecs") or doc["spec"]["tfReplicaSpecs"]
            for role, spec in specs.items():
                found[f"{name}/{role}"] = spec["template"]["spec"]["containers"][0]
    return found


# -- rendering and schemas ---------------------------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_builtin_objects_validate_strictly(overlay: str, tmp_path: Path) -> None:
    validate = tool("kubernetes-validate", "install the dev extra: scripts/setup.sh core")
    builtins = [doc for doc in rendered(overlay) if doc["kind"] not in CRD_KINDS]
    path = tmp_path / f"{overlay}.yaml"
    path.write_text(yaml.safe_dump_all(builtins), encoding="utf-8")
    result = run([validate, "--strict", "--quiet", str(path)])
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output


def test_every_kustomization_is_listed_here() -> None:
    overlays = {p.parent.name for p in (K8S / "overlays").glob("*/kustomization.yaml")}
    assert overlays == set(OVERLAYS), "add new overlays to OVERLAYS so they are validated"
    for path in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "patchesStrategicMerge" not in spec and "patchesJson6902" not in spec, path
        for patch in spec.get("patches", []):
            assert patch.get("target") and "path" in patch, f"{path}: one patch per target (docs/style.md)"
            # A JSON patch is a list of {op, path, ...}; a strategic merge is an object (whose text may
            # well contain "op:", as in `drop: [ALL]`).
            body = yaml.safe_load((path.parent / patch["path"]).read_text(encoding="utf-8"))
            assert isinstance(body, dict), f"{path.parent / patch['path']}: strategic merge, not JSON patch"


def _unknown_keys(given: Any, kept: Any, where: str = "") -> list[str]:
    """Keys present in the input but lost by a model round trip: fields the model does not know."""
    if isinstance(given, dict):
        kept = kept if isinstance(kept, dict) else {}
        lost = [f"{where}.{key}" for key in given if key not in kept]
        return lost + [
            found
            for key in given
            if key in kept
            for found in _unknown_keys(given[key], kept[key], f"{where}.{key}")
        ]
    if isinstance(given, list):
        kept = kept if isinstance(kept, list) else []
        return [
            found
            for i, item in enumerate(given)
            for found in _unknown_keys(item, kept[i] if i < len(kept) else None, f"{where}[{i}]")
        ]
    return []


def test_trainjob_validates_against_the_kubeflow_trainer_sdk() -> None:
    models = pytest.importorskip("kubeflow_trainer_api.models", reason="dev extra: kubeflow-trainer-api")
    (doc,) = [d for d in rendered("kubeflow-trainer") if d["kind"] == "TrainJob"]
    assert doc["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    job = models.TrainerV1alpha1TrainJob.from_dict(doc)  # strict types: raises on a wrong one
    assert _unknown_keys(doc, job.to_dict()) == []
    assert doc["spec"]["runtimeRef"] == {
        "name": "torch-distributed",
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
    }


@pytest.mark.parametrize("kind", ["PyTorchJob", "TFJob"])
def test_training_operator_jobs_validate_against_the_kubeflow_training_sdk(kind: str) -> None:
    training = pytest.importorskip("kubeflow.training", reason="dev extra: kubeflow-training")
    client = training.ApiClient()
    for overlay in ("training-operator", "kubeflow-trainer"):
        for doc in (d for d in rendered(overlay) if d["kind"] == kind):
            assert doc["apiVersion"] == "kubeflow.org/v1"
            response = type("Response", (), {"data": json.dumps(doc)})()
            model = client.deserialize(response, f"KubeflowOrgV1{kind}")
            assert _unknown_keys(doc, client.sanitize_for_serialization(model)) == [], overlay


def _closed(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to other keys."""
    if isinstance(schema, dict):
        closed = {key: _closed(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(item) for item in schema]
    return schema


def _crd_validator(name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="comes with kubernetes-validate (dev extra)")
    with gzip.open(SCHEMAS / name) as fh:
        schema = _closed(json.load(fh))
    # metadata is `type: object` in CRDs; the API server checks it, and so does ObjectMeta here.
    schema["properties"]["metadata"] = {"type": "object"}
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize(
    ("kind", "schema", "overlays"),
    [
        ("InferenceService", "inferenceservice.serving.kserve.io.v1beta1.json.gz", ("kserve",)),
        (
            "PodMonitor",
            "podmonitor.monitoring.coreos.com.v1.json.gz",
            ("kubeflow-trainer", "training-operator"),
        ),
    ],
)
def test_crd_objects_validate_against_published_schemas(
    kind: str, schema: str, overlays: tuple[str, ...]
) -> None:
    validator = _crd_validator(schema)
    seen = 0
    for overlay in overlays:
        for doc in (d for d in rendered(overlay) if d["kind"] == kind):
            errors = [
                f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)
            ]
            assert errors == [], f"{overlay} {kind}/{doc['metadata']['name']}: {errors}"
            seen += 1
    assert seen


# prometheus-adapter's config (pkg/config/config.go): the keys each part of a rule may have.
ADAPTER_RULE_KEYS = {"seriesQuery", "seriesFilters", "resources", "name", "metricsQuery"}
ADAPTER_RESOURCE_KEYS = {"template", "overrides", "namespaced"}


def test_prometheus_adapter_rule_is_the_triton_queue_time_per_request() -> None:
    values = yaml.safe_load((K8S / "components/autoscaling/prometheus-adapter-values.yaml").read_text())
    assert set(values) == {"rules"} and set(values["rules"]) <= {"default", "custom", "external", "resource"}
    (rule,) = values["rules"]["custom"]
    assert set(rule) <= ADAPTER_RULE_KEYS and {"seriesQuery", "resources", "name", "metricsQuery"} <= set(
        rule
    )
    assert set(rule["resources"]) <= ADAPTER_RESOURCE_KEYS
    assert rule["resources"]["overrides"] == {
        "namespace": {"resource": "namespace"},
        "pod": {"resource": "pod"},
    }
    assert set(rule["name"]) <= {"matches", "as"}
    query = rule["metricsQuery"]
    assert re.search(
        r"nv_inference_queue_duration_us\{<<\.LabelMatchers>>\}.*/.*nv_inference_request_success", query
    )
    assert "by (<<.GroupBy>>)" in query
    hpa = _by_kind(rendered("kubeflow-trainer"), "HorizontalPodAutoscaler")["triton"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == rule["name"]["as"]


# -- issue 15, part 4: the defects -------------------------------------------------------------------


def test_registry_overlay_renames_every_imgbench_image_and_keeps_the_tag() -> None:
    base_tags = {
        i["name"]: i["newTag"]
        for i in yaml.safe_load((K8S / "base/kustomization.yaml").read_text())["images"]
    }
    images = {
        c["image"]
        for doc in rendered("registry-example")
        if doc["kind"] in ("Deployment", "Job")
        for c in [
            *doc["spec"]["template"]["spec"].get("initContainers", []),
            *doc["spec"]["template"]["spec"]["containers"],
        ]
    }
    ours = {image for image in images if "imgbench/" in image}
    assert ours and all(image.startswith("registry.example.com/imgbench/") for image in ours), ours
    for image in ours:
        name, tag = image.removeprefix("registry.example.com/").rsplit(":", 1)
        assert tag == base_tags[name], image


@pytest.mark.parametrize("overlay", ["base", "gpu"])
def test_a_retried_trainer_job_resumes_its_run(overlay: str) -> None:
    # restartPolicy OnFailure reruns the same args in the same run folder: without --resume=auto a
    # retry after a crash mid-training would stop on the checkpoint the crashed pod left.
    jobs = {n: c for n, c in _trainer_containers(rendered(overlay)).items() if n.startswith("Job/")}
    assert jobs
    for name, container in jobs.items():
        assert _flags(container["args"]).get("--resume") == "auto", name


def test_components_repeat_the_base_tags() -> None:
    base_tags = {
        i["name"]: i["newTag"]
        for i in yaml.safe_load((K8S / "base/kustomization.yaml").read_text())["images"]
    }
    for path in [*K8S.glob("components/*/kustomization.yaml"), K8S / "overlays/kserve/kustomization.yaml"]:
        for image in yaml.safe_load(path.read_text()).get("images", []):
            # A GPU build (imgbench/trainer-tf-gpu) carries the tag of the image it is built from.
            name = image["name"] if image["name"] in base_tags else image["name"].removesuffix("-gpu")
            assert image["newTag"] == base_tags[name], f"{path}: {image}"
    for overlay in OVERLAYS:
        for doc in rendered(overlay):
            for image in re.findall(r"\bimage: (\S+)", yaml.safe_dump(doc)):
                assert ":" in image.rsplit("/", 1)[-1], (
                    f"{overlay} {doc['kind']}/{doc['metadata']['name']}: {image}"
                )


def test_readme_documents_build_push_and_local_loading() -> None:
    readme = (ROOT / "deploy/README.md").read_text(encoding="utf-8")
    for needle in (
        "docker push",
        "newName",
        "kind load docker-image",
        "minikube image load",
        "overlays/registry-example",
    ):
        assert needle in readme, f"deploy/README.md does not mention {needle!r}"
    for overlay in OVERLAYS:
        assert f"overlays/{overlay}" in readme, f"deploy/README.md does not mention overlays/{overlay}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_applies_after_the_base(overlay: str) -> None:
    """Job pod templates and Deployment selectors are immutable, claims nearly so: an object that an
    overlay shares by name with the base must keep them, so `kubectl apply -k overlays/X` after
    `kubectl apply -k deploy/k8s` succeeds. Two overlays are chosen at the first apply instead
    (deploy/README.md says so): local changes the claims, a registry changes every Job's image."""
    base = rendered("base")
    docs = rendered(overlay)
    first_apply_only = {"local": {"PersistentVolumeClaim"}, "registry-example": {"Job"}}.get(overlay, set())
    for kind, field in (("Job", "spec"), ("Deployment", "selector"), ("PersistentVolumeClaim", "spec")):
        if kind in first_apply_only:
            continue
        before, after = _by_kind(base, kind), _by_kind(docs, kind)
        for name in before.keys() & after.keys():
            old = before[name]["spec"] if field == "spec" else before[name]["spec"]["selector"]
            new = after[name]["spec"] if field == "spec" else after[name]["spec"]["selector"]
            assert old == new, f"{overlay}: {kind}/{name} differs from the base's; give it a new name"


def test_gpu_trainers_are_new_jobs_with_their_own_run_folders() -> None:
    jobs = _by_kind(rendered("gpu"), "Job")
    assert {"trainer-pt-gpu", "trainer-tf-gpu"} <= set(jobs) and not {"trainer-pt", "trainer-tf"} & set(jobs)
    run_dirs = {
        name: _flags(c["args"])["--output-dir"]
        for overlay in ("base", "gpu")
        for name, c in _trainer_containers(rendered(overlay)).items()
    }
    assert len(set(run_dirs.values())) == len(run_dirs), run_dirs


def test_one_gpu_is_enough_training_outranks_serving() -> None:
    docs = rendered("gpu")
    classes = _by_kind(docs, "PriorityClass")
    training, serving = classes["imgbench-training"], classes["imgbench-serving"]
    assert training["value"] > serving["value"]
    assert serving.get("preemptionPolicy") == "Never" and not training.get("globalDefault")
    pods = {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Job", "Deployment")
    }
    gpu_pods = {
        name
        for name, pod in pods.items()
        if "nvidia.com/gpu" in pod["containers"][0]["resources"].get("limits", {})
    }
    assert gpu_pods == {"Job/trainer-pt-gpu", "Job/trainer-tf-gpu", "Deployment/triton"}
    for name in gpu_pods:
        expected = "imgbench-serving" if name.startswith("Deployment/") else "imgbench-training"
        assert pods[name].get("priorityClassName") == expected, name
    for name in ("Job/dataset", *(f"Deployment/{s}" for s in SERVERS)):
        assert pods[name].get("priorityClassName"), name
    for overlay in ("kubeflow-trainer", "training-operator"):
        for kind in ("PyTorchJob", "TFJob"):
            for doc in _by_kind(rendered(overlay), kind).values():
                specs = doc["spec"].get("pytorchReplicaSpecs") or doc["spec"]["tfReplicaSpecs"]
                for role, spec in specs.items():
                    assert spec["template"]["spec"]["priorityClassName"] == "imgbench-training", (
                        f"{kind}/{role}"
                    )


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_finished_training_does_not_rerun(overlay: str) -> None:
    docs = rendered(overlay)
    for job in _by_kind(docs, "Job").values():
        assert "ttlSecondsAfterFinished" not in job["spec"], f"{overlay}: Job/{job['metadata']['name']}"
    for doc in docs:
        if doc["kind"] in ("PyTorchJob", "TFJob"):
            assert "ttlSecondsAfterFinished" not in doc["spec"].get("runPolicy", {}), doc["kind"]
    trainers = _trainer_containers(docs)
    assert trainers
    for name, container in trainers.items():
        argv = [*container.get("command", []), *container["args"]]
        assert "--if-exists=skip" in argv, f"{overlay} {name}: pass --if-exists=skip"


def test_shared_storage_is_readwritemany_with_a_single_node_alternative() -> None:
    claims = _by_kind(rendered("base"), "PersistentVolumeClaim")
    assert {"model-repository", "dataset", "runs", "results", "torchserve-auth"} <= set(claims)
    for name, claim in claims.items():
        expected = ["ReadWriteOnce"] if name == "prometheus-data" else ["ReadWriteMany"]
        assert claim["spec"]["accessModes"] == expected, name
    for name, claim in _by_kind(rendered("local"), "PersistentVolumeClaim").items():
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"], name


def test_loadgen_master_results_on_a_claim() -> None:
    docs = rendered("base")
    pod = _by_kind(docs, "Deployment")["loadgen"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    results_dir = {e["name"]: e.get("value") for e in container["env"]}["IMGBENCH_RESULTS_DIR"]
    mount = next(m for m in container["volumeMounts"] if results_dir.startswith(m["mountPath"]))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    claim = volume["persistentVolumeClaim"]["claimName"]
    assert claim in _by_kind(docs, "PersistentVolumeClaim") and not mount.get("readOnly")


def test_grafana_admin_secret_is_generated() -> None:
    docs = rendered("base")
    secrets = _by_kind(docs, "Secret")
    container = _by_kind(docs, "Deployment")["grafana"]["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in container["env"] if e["name"] == "GF_SECURITY_ADMIN_PASSWORD")["valueFrom"][
        "secretKeyRef"
    ]
    assert ref["name"] in secrets and ref["name"].startswith("grafana-admin-"), ref
    assert ref["key"] in secrets[ref["name"]]["data"]


@pytest.mark.parametrize("overlay", ["base", *OVERLAYS])
def test_uis_are_namespace_internal(overlay: str) -> None:
    """Only rules limited to pods of this namespace may reach Grafana (3000) or the Locust UI (8089)."""
    for name, policy in _by_kind(rendered(overlay), "NetworkPolicy").items():
        for rule in policy["spec"].get("ingress", []):
            sources = rule.get("from")
            in_namespace = bool(sources) and all(set(s) == {"podSelector"} for s in sources)
            ports = {p["port"] for p in rule.get("ports", [])}
            if not in_namespace:
                assert ports and not ports & UI_PORTS, f"{overlay}: NetworkPolicy/{name} opens a UI: {rule}"


# -- issue 15, parts 1, 3 and 5: distributed training, autoscaling, KServe --------------------------


@pytest.mark.parametrize("overlay", ["gpu", "kubeflow-trainer", "training-operator"])
def test_distributed_trainers_keep_the_base_recipe(overlay: str) -> None:
    base = {
        name.split("/")[1]: _flags(c["args"]) for name, c in _trainer_containers(rendered("base")).items()
    }
    for name, container in _trainer_containers(rendered(overlay)).items():
        if overlay == "gpu":
            continue  # the GPU recipe (resnet152) is a recipe of its own
        framework = "trainer-pt" if "trainer-pt" in container["image"] else "trainer-tf"
        flags = _flags(container["args"])
        for flag in RECIPE_FLAGS:
            assert flags.get(flag) == base[framework].get(flag), f"{overlay} {name}: {flag}"
        assert flags["--data-path"] == base[framework]["--data-path"]


@pytest.mark.parametrize("overlay", ["kubeflow-trainer", "training-operator"])
def test_distributed_trainers_resume_on_shared_storage(overlay: str) -> None:
    docs = rendered(overlay)
    claims = _by_kind(docs, "PersistentVolumeClaim")
    distributed = {n: c for n, c in _trainer_containers(docs).items() if not n.startswith("Job/")}
    assert {n.split("/")[0] for n in distributed} == (
        {"TrainJob", "TFJob"} if overlay == "kubeflow-trainer" else {"PyTorchJob", "TFJob"}
    )
    for name, container in distributed.items():
        flags = _flags(container["args"])
        run_dir = flags["--output-dir"]
        assert run_dir.startswith("/runs/"), f"{name}: the run folder is on the runs claim"
        # A restarted pod runs the same command: the trainer resumes when the run folder holds a
        # checkpoint (--resume auto), no shell test of a file name decides it.
        assert flags.get("--resume") == "auto", f"{name}: --resume=auto"
        command = " ".join(container["command"])
        assert "--resume" not in command and "[ -f" not in command, f"{name}: {command}"
        if "trainer-pt" in container["image"]:
            assert container["command"][:3] == ["python", "-m", "torch.distributed.run"], name
        assert claims["runs"]["spec"]["accessModes"] == ["ReadWriteMany"]
    for kind in ("PyTorchJob", "TFJob"):
        for doc in _by_kind(docs, kind).values():
            specs = doc["spec"].get("pytorchReplicaSpecs") or doc["spec"]["tfReplicaSpecs"]
            for role, spec in specs.items():
                assert spec["restartPolicy"] == "OnFailure", f"{kind}/{role}"
                volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
                assert volumes["runs"]["persistentVolumeClaim"]["claimName"] == "runs"
                assert volumes["model-repository"]["persistentVolumeClaim"]["claimName"] == "model-repository"
            assert doc["spec"]["runPolicy"]["backoffLimit"] >= 1
    tfjob = _by_kind(docs, "TFJob")["trainer-tf"]["spec"]["tfReplicaSpecs"]
    assert set(tfjob) == {"Worker"} and tfjob["Worker"]["replicas"] >= 2, (
        "MultiWorkerMirroredStrategy: workers only"
    )
    worker = tfjob["Worker"]["template"]["spec"]["containers"][0]
    index = next(e for e in worker["env"] if e["name"] == "REPLICA_INDEX")["valueFrom"]["fieldRef"]
    assert index["fieldPath"] == "metadata.labels['training.kubeflow.org/replica-index']"
    assert 'if [ "$REPLICA_INDEX" != 0 ]; then set -- "$@" --no-export; fi' in worker["command"][2], (
        "one exporter"
    )


@pytest.mark.parametrize("overlay", ["kubeflow-trainer", "training-operator"])
def test_distributed_trainers_on_gpus_ask_for_cuda(overlay: str) -> None:
    """Every distributed trainer that requests GPUs trains on them (--device=cuda fails without one,
    never falls back to the CPU), and trainer-tf does so with the image that has CUDA."""
    distributed = {
        n: c for n, c in _trainer_containers(rendered(overlay)).items() if not n.startswith("Job/")
    }
    for name, container in distributed.items():
        resources = container.get("resources") or container["resourcesPerNode"]
        gpus = resources["limits"].get("nvidia.com/gpu", 0)
        assert gpus >= 1 and resources["requests"].get("nvidia.com/gpu") == gpus, name
        assert _flags(container["args"]).get("--device") == "cuda", f"{name}: --device=cuda"
        if "trainer-tf" in container["image"]:
            image, tag = container["image"].rsplit(":", 1)
            assert image == "imgbench/trainer-tf-gpu" and tag == _base_tag("imgbench/trainer-tf"), image
    if overlay == "training-operator":
        (job,) = _by_kind(rendered(overlay), "PyTorchJob").values()
        command = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
        # No shell: the kubelet expands $(VAR) from the variables the operator adds to the container.
        assert {"--master-addr=$(MASTER_ADDR)", "--master-port=$(MASTER_PORT)"} <= set(command), command


def _base_tag(image: str) -> str:
    images = yaml.safe_load((K8S / "base/kustomization.yaml").read_text())["images"]
    return next(i["newTag"] for i in images if i["name"] == image)


@pytest.mark.parametrize("overlay", ["kubeflow-trainer", "training-operator"])
def test_every_server_has_an_hpa_and_no_fixed_replicas(overlay: str) -> None:
    docs = rendered(overlay)
    hpas = _by_kind(docs, "HorizontalPodAutoscaler")
    deployments = _by_kind(docs, "Deployment")
    assert set(hpas) == set(SERVERS)
    for server, hpa in hpas.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": server,
        }
        assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert "replicas" not in deployments[server]["spec"], f"{server}: apply would reset the HPA's count"
    torchserve = {
        e["name"]: e.get("value")
        for e in deployments["torchserve"]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert torchserve["TS_DISABLE_TOKEN_AUTHORIZATION"] == "true", (
        "replicas cannot share TorchServe's random keys"
    )
    assert "torchserve-client-ports" not in _by_kind(docs, "NetworkPolicy"), (
        "TorchServe without a token: namespace only"
    )
    workers = deployments["loadgen-worker"]["spec"]
    assert workers["replicas"] >= 1 and "loadgen-worker" not in hpas, "the user scales the Locust workers"


def test_kserve_serves_each_runtime_from_the_same_repository() -> None:
    docs = rendered("kserve")
    base = rendered("base")
    services = _by_kind(docs, "InferenceService")
    assert set(services) == set(SERVERS)
    assert not set(SERVERS) & set(_by_kind(docs, "Deployment")), "the predictors replace the Deployments"
    expected = {
        "torchserve": ("pytorch", "kserve-torchserve"),
        "tfserving": ("tensorflow", "kserve-tensorflow-serving"),
        "triton": ("onnx", "kserve-tritonserver"),
    }
    base_deployments = _by_kind(base, "Deployment")
    base_services = _by_kind(docs, "Service")
    generated = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    for name, isvc in services.items():
        predictor = isvc["spec"]["predictor"]
        model = predictor["model"]
        assert (model["modelFormat"]["name"], model["runtime"]) == expected[name]
        base_container = base_deployments[name]["spec"]["template"]["spec"]["containers"][0]
        assert model["args"] == base_container["args"] and model["image"] == base_container["image"], name
        volumes = {v["name"]: v for v in predictor["volumes"]}
        assert volumes["model-repository"]["persistentVolumeClaim"]["claimName"] == "model-repository"
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in generated, volume
        selector = base_services[name]["spec"]["selector"]
        assert selector.items() <= predictor["labels"].items(), (
            f"{name}: the base Service must find the predictor"
        )
    copy = (K8S / "overlays/kserve/torchserve-config.properties").read_text(encoding="utf-8")
    assert copy == (ROOT / "services/serving/torchserve/config.properties").read_text(encoding="utf-8"), (
        "refresh the copy: cp services/serving/torchserve/config.properties "
        "deploy/k8s/overlays/kserve/torchserve-config.properties"
    )


def test_the_crd_checks_reject_an_unknown_field() -> None:
    """The checks above would pass vacuously if a model or schema accepted anything."""
    models = pytest.importorskip("kubeflow_trainer_api.models", reason="dev extra: kubeflow-trainer-api")
    (doc,) = [d for d in rendered("kubeflow-trainer") if d["kind"] == "TrainJob"]
    wrong = json.loads(json.dumps(doc))
    wrong["spec"]["trainer"]["numNode"] = 2
    assert _unknown_keys(wrong, models.TrainerV1alpha1TrainJob.from_dict(wrong).to_dict()) == [
        ".spec.trainer.numNode"
    ]
    training = pytest.importorskip("kubeflow.training", reason="dev extra: kubeflow-training")
    client = training.ApiClient()
    (doc,) = [d for d in rendered("training-operator") if d["kind"] == "TFJob"]
    wrong = json.loads(json.dumps(doc))
    wrong["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imag"] = "x"
    model = client.deserialize(type("Response", (), {"data": json.dumps(wrong)})(), "KubeflowOrgV1TFJob")
    assert _unknown_keys(wrong, client.sanitize_for_serialization(model)) == [
        ".spec.tfReplicaSpecs.Worker.template.spec.containers[0].imag"
    ]
    validator = _crd_validator("inferenceservice.serving.kserve.io.v1beta1.json.gz")
    wrong = json.loads(json.dumps(_by_kind(rendered("kserve"), "InferenceService")["triton"]))
    wrong["spec"]["predictor"]["model"]["storageUrl"] = "pvc://model-repository"
    assert [e.message for e in validator.iter_errors(wrong)] == [
        "Additional properties are not allowed ('storageUrl' was unexpected)"
    ]
