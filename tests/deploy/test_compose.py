"""docker-compose.yml, statically: it validates with docker-compose (no engine needed), uses the
ports of imgbench/ports.py, pins images, health-checks long-running services, orders one-shot jobs
before the servers, keeps GPUs to the `gpu` profile, runs every service as a non-root user on a
read-only root filesystem (offline stand-ins too), and every image it builds runs the same entry
point as the native stack."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from deploy_support import COMPOSE_FILE, ROOT, run, tool

from imgbench.ports import DEFAULT_PORTS

ONE_SHOT = {"volumes-init", "dataset", "trainer-pt", "trainer-tf", "trainer-pt-gpu", "trainer-tf-gpu"}
# compose service -> imgbench/ports.py service whose ports it uses
PORT_SERVICE = {
    "torchserve": "torchserve",
    "tfserving": "tfserving",
    "triton": "triton",
    "triton-gpu": "triton",
    "loadgen": "loadgen",
    "prometheus": "prometheus",
    "pushgateway": "pushgateway",
    "grafana": "grafana",
}
NEVER_PUBLISHED = {("torchserve", "management"), ("torchserve", "grpc_management")}
GPU_SERVICES = {"trainer-pt-gpu", "trainer-tf-gpu", "triton-gpu"}


def _services(compose: dict) -> dict[str, dict]:
    return compose["services"]


def _published(service: dict) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) of each ``ports`` entry."""
    result = []
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        assert len(parts) == 3, f"publish with an explicit address (127.0.0.1:HOST:CONTAINER): {entry}"
        result.append((parts[0], int(parts[1]), int(parts[2])))
    return result


def test_docker_compose_config_validates(tmp_path: Path) -> None:
    docker_compose = tool("docker-compose", "run scripts/setup.sh (Debian package 'docker-compose')")
    for args in ([], ["--profile", "gpu"]):
        result = run([docker_compose, "-f", str(COMPOSE_FILE), *args, "config", "-q"])
        assert result.returncode == 0, result.stderr
    services = run([docker_compose, "-f", str(COMPOSE_FILE), "config", "--services"])
    assert services.returncode == 0, services.stderr
    assert {"dataset", "torchserve", "tfserving", "triton", "loadgen", "grafana"} <= set(
        services.stdout.split()
    )


def test_ports_are_those_of_imgbench_ports(compose: dict) -> None:
    for name, service in _services(compose).items():
        published = _published(service)
        if name not in PORT_SERVICE:
            assert not published, f"{name} publishes ports but has none in imgbench/ports.py"
            continue
        expected = DEFAULT_PORTS[PORT_SERVICE[name]]
        by_container_port = {port: port_name for port_name, port in expected.items()}
        for address, host_port, container_port in published:
            assert address == "127.0.0.1", f"{name}: publish on 127.0.0.1 only, not {address}"
            assert container_port in by_container_port, (
                f"{name}: container port {container_port} is not in imgbench/ports.py {dict(expected)}"
            )
            assert (PORT_SERVICE[name], by_container_port[container_port]) not in NEVER_PUBLISHED, (
                f"{name}: management port {container_port} must stay inside the compose network"
            )
            if name in PORT_SERVICE and not name.endswith("-gpu"):
                assert host_port == container_port, f"{name}: host port {host_port} != {container_port}"
        client_ports = {p for n, p in expected.items() if (PORT_SERVICE[name], n) not in NEVER_PUBLISHED}
        assert {c for _, _, c in published} == client_ports, f"{name}: publish every client port"


def test_no_service_shares_the_hosts_network(compose: dict) -> None:
    # network_mode: host would bind every port (management included) on the host's interfaces.
    for name, service in _services(compose).items():
        assert service.get("network_mode") in (None, "none"), (
            f"{name}: network_mode {service['network_mode']}"
        )


def test_images_are_pinned(compose: dict) -> None:
    for name, service in _services(compose).items():
        image = service.get("image")
        assert image, f"{name}: name the image (built ones too, so they are tagged)"
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} is not pinned"


def test_long_running_services_have_healthchecks(compose: dict) -> None:
    for name, service in _services(compose).items():
        if name in ONE_SHOT:
            assert service.get("restart", "no") == "no", f"{name}: a one-shot job must not restart"
            continue
        check = service.get("healthcheck")
        assert check and check.get("test"), f"{name}: long-running services need a healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_servers_wait_for_the_trainers(compose: dict) -> None:
    services = _services(compose)
    expected = {
        "torchserve": {"trainer-pt"},
        "tfserving": {"trainer-tf"},
        "triton": {"trainer-pt", "trainer-tf"},
        "triton-gpu": {"trainer-pt-gpu", "trainer-tf-gpu"},
        "trainer-pt": {"dataset"},
        "trainer-tf": {"dataset"},
        "dataset": {"volumes-init"},
    }
    for name, jobs in expected.items():
        depends = services[name]["depends_on"]
        for job in jobs:
            assert depends[job]["condition"] == "service_completed_successfully", (name, job)
    for server in ("torchserve", "tfserving", "triton"):
        assert services["loadgen"]["depends_on"][server]["condition"] == "service_healthy"


def test_a_killed_trainer_resumes_on_the_next_up(compose: dict) -> None:
    # One-shot trainers: a second `up` skips a finished model (--if-exists) and continues a killed
    # run from its last checkpoint (--resume=auto) instead of failing on the run folder it left.
    trainers = {n: s for n, s in _services(compose).items() if n.startswith("trainer-")}
    assert set(trainers) == {"trainer-pt", "trainer-tf", "trainer-pt-gpu", "trainer-tf-gpu"}
    for name, service in trainers.items():
        assert "--resume=auto" in service["command"], name
        assert "--if-exists=${IMGBENCH_IF_EXISTS:-skip}" in service["command"], name


def test_gpu_only_in_the_gpu_profile(compose: dict) -> None:
    for name, service in _services(compose).items():
        devices = service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
        if name in GPU_SERVICES:
            assert service.get("profiles") == ["gpu"], name
            assert devices and devices[0]["capabilities"] == ["gpu"], f"{name}: reserve the GPU"
        else:
            assert not service.get("profiles"), f"{name}: CPU services run without a profile"
            assert not devices, f"{name}: only gpu-profile services reserve devices"


def test_named_volumes_for_models_and_data(compose: dict) -> None:
    assert {"model-repository", "dataset"} <= set(compose["volumes"])
    services = _services(compose)
    for server in ("torchserve", "tfserving", "triton", "triton-gpu"):
        assert "model-repository:/models:ro" in services[server]["volumes"], server
    for trainer in ("trainer-pt", "trainer-tf", "trainer-pt-gpu", "trainer-tf-gpu"):
        assert "model-repository:/models" in services[trainer]["volumes"], trainer


def test_torchserve_token_auth_is_on_and_the_key_reaches_the_loadgen(compose: dict) -> None:
    services = _services(compose)
    torchserve = services["torchserve"]
    assert torchserve["environment"]["TS_DISABLE_TOKEN_AUTHORIZATION"] == "false"
    assert not any("--disable-token" in arg for arg in torchserve["command"])
    config = (ROOT / "services/serving/torchserve/config.properties").read_text()
    assert not re.search(r"^\s*disable_token_authorization\s*=\s*true", config, re.M)
    # key_file.json lands in the working directory (the image's WORKDIR): the shared volume the load
    # generator reads; keyguard.py, the image's entry point, renews the keys before they expire.
    dockerfile = (ROOT / torchserve["build"]["dockerfile"]).read_text(encoding="utf-8")
    workdir = re.findall(r"^WORKDIR\s+(\S+)", dockerfile, re.M)[-1]
    assert f"torchserve-auth:{workdir}" in torchserve["volumes"]
    assert re.search(r"^ENTRYPOINT .*keyguard\.py", dockerfile, re.M)
    assert re.search(r"^\s*token_expiration_min\s*=\s*\d+", config, re.M), "keys expire after 60 min"
    for name in ("loadgen", "loadgen-worker"):
        assert "torchserve-auth:/run/torchserve-auth:ro" in services[name]["volumes"], name
        key_file = services[name]["environment"]["IMGBENCH_TORCHSERVE_KEY_FILE"]
        assert key_file == "/run/torchserve-auth/key_file.json", name


# Non-root uid each service runs as: the project's images 1000 (owner of the shared volumes), the
# Prometheus images nobody (65534, as their images and offline stand-ins run), Grafana its image's 472.
SERVICE_UIDS = {"prometheus": 65534, "pushgateway": 65534, "grafana": 472}
PROJECT_UID = 1000
# The only root service: a one-shot chown of the fresh named volumes, without a network.
ROOT_SERVICES = {"volumes-init"}


def test_every_service_runs_as_a_non_root_user(compose: dict) -> None:
    for name, service in _services(compose).items():
        user = str(service.get("user", ""))
        assert re.fullmatch(r"\d+:\d+", user), f"{name}: set user: UID:GID explicitly, got {user!r}"
        uid = int(user.split(":")[0])
        if name in ROOT_SERVICES:
            assert uid == 0 and service["network_mode"] == "none", name
            assert service["command"][0] == "chown", f"{name}: root only to chown the volumes"
            continue
        expected = SERVICE_UIDS.get(name, PROJECT_UID)
        assert uid == expected, f"{name}: runs as uid {uid}, expected the non-root {expected}"


# Besides its volumes, each service writes only to these tmpfs folders; the rest of its root
# filesystem is read-only (docker-compose.yml says, per service, what each image writes where).
PROJECT_TMPFS = {"/tmp"}  # the project's one-shot jobs and the loadgen: HOME and every library's scratch
SERVICE_TMPFS = {
    "volumes-init": set(),
    "torchserve": {"/tmp", "/home/model-server/tmp"},  # TEMP: pid file, unpacked .mar, netty's library
    "tfserving": {"/tmp"},
    "triton": {"/tmp"},
    "triton-gpu": {"/tmp"},
    "prometheus": set(),  # the TSDB is its volume
    "pushgateway": set(),  # in memory
    "grafana": {"/tmp"},
}
# Services that cannot run with a read-only root filesystem, each with why: none today.
WRITABLE_ROOT: dict[str, str] = {}


def _tmpfs(service: dict) -> set[str]:
    entries = service.get("tmpfs", [])
    return {entry.split(":")[0] for entry in ([entries] if isinstance(entries, str) else entries)}


def _assert_tmpfs_owned_by_the_service(name: str, service: dict) -> None:
    """Docker mounts a tmpfs root-owned with the mode of the image's folder (0755 but for /tmp's
    1777): any other tmpfs needs uid= and gid= of the service's user, or the server cannot write it."""
    uid, gid = str(service["user"]).split(":")
    entries = service.get("tmpfs", [])
    for entry in [entries] if isinstance(entries, str) else entries:
        path, _, options = entry.partition(":")
        if path != "/tmp":
            assert {f"uid={uid}", f"gid={gid}"} <= set(options.split(",")), f"{name}: {entry}"


def test_every_service_has_a_read_only_root_filesystem(compose: dict) -> None:
    for name, service in _services(compose).items():
        if name in WRITABLE_ROOT:
            assert not service.get("read_only"), f"{name}: read-only after all? drop it from WRITABLE_ROOT"
            continue
        assert service.get("read_only") is True, f"{name}: set read_only: true (or say why in WRITABLE_ROOT)"
        assert _tmpfs(service) == SERVICE_TMPFS.get(name, PROJECT_TMPFS), name
        _assert_tmpfs_owned_by_the_service(name, service)


def _dockerfile_env(dockerfile: Path, name: str) -> str:
    match = re.search(rf"\b{name}=(\S+)", (ROOT / dockerfile).read_text(encoding="utf-8"))
    assert match, f"{dockerfile}: no {name}="
    return match.group(1)


def test_torchserve_temp_folder_is_a_tmpfs(compose: dict) -> None:
    torchserve = _services(compose)["torchserve"]
    assert _dockerfile_env(torchserve["build"]["dockerfile"], "TEMP") in _tmpfs(torchserve)


def test_the_offline_stand_ins_keep_the_users_and_the_read_only_root(compose: dict) -> None:
    """The stand-ins of deploy/compose/offline.yml, merged as compose merges them: same users, read-only,
    every tmpfs of the official service kept, plus the Triton stand-in's launcher workdir."""
    docker_compose = tool("docker-compose", "run scripts/setup.sh (Debian package 'docker-compose')")
    offline = ROOT / "deploy" / "compose" / "offline.yml"
    result = run([docker_compose, "-f", str(COMPOSE_FILE), "-f", str(offline), "config"])
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)["services"]
    for name, service in _services(compose).items():
        if name not in merged or name in WRITABLE_ROOT:
            continue
        assert merged[name].get("read_only") is True, f"{name}: offline.yml lost read_only"
        assert str(merged[name].get("user")) == str(service["user"]), name
        assert _tmpfs(service) <= _tmpfs(merged[name]), f"{name}: offline.yml lost a tmpfs"
        _assert_tmpfs_owned_by_the_service(name, merged[name])
    entry = _dockerfile_entry(ROOT / "services/serving/triton/Dockerfile")
    (workdir,) = [arg.split("=", 1)[1] for arg in entry if arg.startswith("--workdir=")]
    assert workdir in _tmpfs(merged["triton"]), "the Triton stand-in writes its --workdir"


def test_the_loadgen_master_asks_for_every_interface_inside_the_network(
    compose: dict, k8s_cpu: list[dict]
) -> None:
    # `python -m loadgen` binds its web UI to 127.0.0.1 unless told otherwise; in a container the
    # published port (127.0.0.1 on the host) needs the UI on the container's every interface.
    assert "--web-host=0.0.0.0" in _services(compose)["loadgen"]["command"]
    (deployment,) = [d for d in k8s_cpu if d["kind"] == "Deployment" and d["metadata"]["name"] == "loadgen"]
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "loadgen"]
    assert "--web-host=0.0.0.0" in [*container.get("command", []), *container.get("args", [])]


def test_observability_mounts_the_deploy_files(compose: dict) -> None:
    services = _services(compose)
    for mount in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        source = mount.split(":")[0]
        if source.startswith("./"):
            assert (ROOT / source).exists(), f"mounted file missing: {source}"
    grafana_env = services["grafana"]["environment"]
    assert grafana_env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert grafana_env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"


# -- entry points: the image runs what native mode runs -----------------------------------------------
def _dockerfile_entry(dockerfile: Path) -> list[str]:
    """The last ENTRYPOINT of ``dockerfile`` (exec form; shell form is split like a shell)."""
    entry: list[str] | None = None
    text = re.sub(r"\\\n", " ", dockerfile.read_text(encoding="utf-8"))
    for line in text.splitlines():
        match = re.match(r"\s*ENTRYPOINT\s+(.*)$", line, re.I)
        if match:
            value = match.group(1).strip()
            entry = json.loads(value) if value.startswith("[") else shlex.split(value)
    assert entry, f"{dockerfile}: no ENTRYPOINT; compose passes arguments only, so the image needs one"
    return entry


def _signature(argv: list[str]) -> tuple[str, ...]:
    """What identifies a command across machines: the program (python3.11 -> python) and the
    module after -m or the locustfile after -f, without directories."""
    program = Path(argv[0]).name
    program = "python" if re.fullmatch(r"python[0-9.]*", program) else program
    rest = argv[1:]
    for flag in ("-m", "-f", "--locustfile"):
        if flag in rest:
            return (program, flag if flag != "--locustfile" else "-f", Path(rest[rest.index(flag) + 1]).name)
    return (program,)


def _native_signature(service: str) -> tuple[str, ...]:
    if service == "dataset":
        return ("imgbench",)  # the core CLI ([project.scripts] imgbench = imgbench.cli:main)
    if service in ("trainer-pt", "trainer-tf"):
        module = service.replace("-", "_")
        assert (ROOT / "services" / service / module / "__main__.py").is_file()
        return ("python", "-m", module)  # `python -m trainer_pt train ...` (docs/architecture.md)
    if service == "loadgen":
        from imgbench.stack.services import SERVICES

        if "loadgen" not in SERVICES:
            pytest.skip("the loadgen is not registered with the native stack runner yet")
        return _loadgen_native_signature()
    raise AssertionError(f"no native command known for {service}")


def _loadgen_native_signature() -> tuple[str, ...]:
    from imgbench.stack.ports import default_port_map
    from imgbench.stack.services import SERVICES, StackContext

    plan = SERVICES["loadgen"].build(StackContext(Path("/tmp/imgbench-entry-check"), default_port_map()))
    return _signature(plan.argv)


@pytest.mark.parametrize("service", ["dataset", "trainer-pt", "trainer-tf", "loadgen"])
def test_built_images_run_the_native_entry_point(compose: dict, service: str) -> None:
    build = _services(compose)[service]["build"]
    dockerfile = ROOT / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    if not dockerfile.is_file():
        pytest.skip(f"{dockerfile.relative_to(ROOT)} is not written yet")
    entry = _dockerfile_entry(dockerfile)
    assert _signature(entry) == _native_signature(service), (
        f"{dockerfile.relative_to(ROOT)} ENTRYPOINT {entry} is not the native command of {service}"
    )
    # compose passes arguments only, so the Dockerfile's ENTRYPOINT is what runs.
    assert "entrypoint" not in _services(compose)[service], service


def test_every_built_image_is_listed() -> None:
    """Each service Dockerfile in the repository is built by some compose service."""
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for dockerfile in sorted(ROOT.glob("services/*/Dockerfile")):
        relative = dockerfile.relative_to(ROOT).as_posix()
        assert f"dockerfile: {relative}" in text, f"{relative} is not built by docker-compose.yml"


def _trainer_tf_config_names() -> dict[str, str]:
    """File names trainer-tf writes at tfserving/ (trainer_tf/tfserving_config.py), read by path:
    the module needs only the core, not TensorFlow."""
    path = ROOT / "services/trainer-tf/trainer_tf/tfserving_config.py"
    if not path.is_file():
        pytest.skip("trainer-tf's tfserving_config.py is not written yet")
    spec = importlib.util.spec_from_file_location("trainer_tf_tfserving_config", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {
        "--model_config_file": module.MODELS_CONFIG,
        "--batching_parameters_file": module.BATCHING_PARAMETERS,
        "--monitoring_config_file": module.MONITORING_CONFIG,
        "metrics_path": module.PROMETHEUS_PATH,
    }


def test_tfserving_reads_the_files_trainer_tf_writes(compose: dict) -> None:
    names = _trainer_tf_config_names()
    k8s = yaml.safe_load_all((ROOT / "deploy/k8s/base/tfserving.yaml").read_text())
    k8s_args = next(d for d in k8s if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    for args in (compose["services"]["tfserving"]["command"], k8s_args["args"]):
        for flag in ("--model_config_file", "--batching_parameters_file", "--monitoring_config_file"):
            assert f"{flag}=/models/tfserving/{names[flag]}" in args, flag
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    job = next(j for j in prometheus["scrape_configs"] if j["job_name"] == "tfserving")
    assert job["metrics_path"] == names["metrics_path"]


def _inline_programs(argv: list[str]) -> list[tuple[str, str]]:
    """(language, source) of `python -c SRC` and `bash|sh -c SRC` commands in ``argv``."""
    if argv and argv[0] in ("CMD", "CMD-SHELL"):
        argv = argv[1:]
    if len(argv) >= 3 and argv[1] == "-c":
        if Path(argv[0]).name.startswith("python"):
            return [("python", argv[2])]
        if Path(argv[0]).name in ("bash", "sh"):
            return [(Path(argv[0]).name, argv[2])]
    return []


def _k8s_commands() -> list[list[str]]:
    commands = []
    for path in (ROOT / "deploy/k8s/base").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc["kind"] not in ("Deployment", "Job"):
                continue
            pod = doc["spec"]["template"]["spec"]
            for container in [*pod.get("initContainers", []), *pod["containers"]]:
                commands.append(container.get("command", []))
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    commands.append(container.get(probe, {}).get("exec", {}).get("command", []))
    return commands


def test_inline_probe_programs_parse(compose: dict) -> None:
    """Healthcheck and probe one-liners are at least valid Python / shell."""
    commands = [s["healthcheck"]["test"] for s in compose["services"].values() if "healthcheck" in s]
    programs = [p for argv in [*commands, *_k8s_commands()] for p in _inline_programs(argv)]
    assert len(programs) >= 8
    for language, source in programs:
        if language == "python":
            compile(source, "<probe>", "exec")
        else:
            result = run([language, "-n", "-c", source.replace("$$", "$")])
            assert result.returncode == 0, f"{source}\n{result.stderr}"
