"""The ready configs of `imgbench tune` (RUN_DIR/best) in compose and Kubernetes: deploy/compose/tuned.yml
renders with docker-compose and points each server at each file, with the flags and environment
taken from them (the rendered entry points are run with stand-in binaries that print what they
get); deploy/k8s/components/tuned-config renders over the base, validates, mounts the same files, and
ships exactly what tune writes for the registry defaults. The file names are
imgbench.tune.configs.READY_FILES everywhere.

Regenerate the component's example best/ after a change to what tune writes:
    .venv/core/bin/python tests/deploy/test_tuned_config.py
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from deploy_support import COMPOSE_FILE, DEPLOY, K8S, ROOT, render_kustomization, run, tool

from imgbench.triton_config import TritonModelSpec, render_config
from imgbench.tune.configs import READY_FILES, ready_files, write_ready_configs

TUNED_COMPOSE = DEPLOY / "compose" / "tuned.yml"
COMPONENT = K8S / "components" / "tuned-config"
MODELS = {"triton": "pt_mobilenet_v3_small", "torchserve": "pt_mobilenet_v3_small", "tfserving": ""}
TUNED = {  # a configuration unlike the defaults, so a file that is not read shows
    "triton": {"max_batch_size": 16, "max_queue_delay_us": 500, "ort_threads": 2},
    "tfserving": {"max_batch_size": 16, "intra_op_threads": 2, "inter_op_threads": 2},
    "torchserve": {"batch_size": 16, "max_batch_delay_ms": 10, "workers": 2, "torch_threads": 2},
}


def triton_source(model: str) -> str:
    """The config.pbtxt trainer-pt writes for the base's model (32 px digits, 10 classes)."""
    return render_config(TritonModelSpec(model, "image", [3, 32, 32], "logits", 10), "onnxruntime")


def write_best(out_dir: Path, configs: dict[str, dict] | None = None) -> list[Path]:
    """Every server's ready files, as `imgbench tune` writes them, into one best/ folder."""
    written = []
    for server, model in MODELS.items():
        config = (configs or {}).get(server, {})
        written += write_ready_configs(server, model, config, out_dir, triton_source(model))
    return written


def relative_names(paths: list[Path], root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in paths}


def test_tune_writes_exactly_the_ready_file_names(tmp_path: Path) -> None:
    written = write_best(tmp_path, TUNED)
    expected = {name for server, model in MODELS.items() for name in ready_files(server, model)}
    assert relative_names(written, tmp_path) == expected
    assert set(READY_FILES) == set(MODELS)


# -- compose --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tuned_compose(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    docker_compose = tool("docker-compose", "run scripts/setup.sh (Debian package 'docker-compose')")
    best = tmp_path_factory.mktemp("run") / "best"
    write_best(best, TUNED)
    env = {**os.environ, "IMGBENCH_TUNED_DIR": str(best), "IMGBENCH_TUNED_MODEL": MODELS["triton"]}
    result = subprocess.run(
        [docker_compose, "-f", str(COMPOSE_FILE), "-f", str(TUNED_COMPOSE), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"], best


def _binds(service: dict) -> dict[str, Path]:
    """container path -> host path of a rendered service's bind mounts."""
    binds = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":") if isinstance(volume, str) else volume
        if source.startswith("/"):
            binds[target] = Path(source)
    return binds


def _mounted_names(service: dict, best: Path) -> set[str]:
    """The ready files (relative to best/) a service can read through its binds."""
    names = set()
    for source in _binds(service).values():
        if source.is_relative_to(best):
            files = [source] if source.is_file() else [p for p in source.rglob("*") if p.is_file()]
            names |= relative_names(files, best)
    return names


def test_the_compose_override_mounts_every_ready_file(tuned_compose: tuple[dict, Path]) -> None:
    services, best = tuned_compose
    mounted = {
        server: _mounted_names(services[server], best) for server in ("triton", "tfserving", "torchserve")
    }
    mounted["torchserve"] |= _mounted_names(services["torchserve-tuned"], best)
    for server, model in MODELS.items():
        assert mounted[server] == set(ready_files(server, model)), server


def test_compose_triton_reads_the_tuned_config_pbtxt(tuned_compose: tuple[dict, Path]) -> None:
    services, best = tuned_compose
    triton = services["triton"]
    repository = next(a.split("=", 1)[1] for a in triton["command"] if a.startswith("--model-repository="))
    (name,) = ready_files("triton", MODELS["triton"])
    target = f"{repository}/{name.removeprefix('triton/')}"
    assert _binds(triton)[target] == best / name
    assert "max_batch_size: 16" in (best / name).read_text()


def _run_entry_point(argv: list[str], binds: dict[str, Path], tmp_path: Path, fake: str) -> dict:
    """Run a rendered ``sh -c`` entry point here: container paths mapped to their bind sources, and
    ``fake`` (the server binary or python) a script that prints its arguments and environment."""
    script_index = argv.index("-c") + 1
    script = argv[script_index].replace("$$", "$")  # compose's escape, as the container gets it
    for target, source in sorted(binds.items(), key=lambda item: -len(item[0])):
        script = script.replace(target, str(source))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / fake
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'env': dict(os.environ)}))\n"
    )
    stand_in.chmod(stand_in.stat().st_mode | stat.S_IEXEC)
    done = subprocess.run(
        [*argv[:script_index], script, *argv[script_index + 1 :]],
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def _last_flags(argv: list[str]) -> dict[str, str]:
    """--flag=value arguments as the server reads them: the last value of each flag wins."""
    flags = {}
    for arg in argv:
        if arg.startswith("--") and "=" in arg:
            key, value = arg[2:].split("=", 1)
            flags[key] = value
    return flags


def test_compose_tfserving_runs_with_the_tuned_batching_file_and_thread_flags(
    tuned_compose: tuple[dict, Path], tmp_path: Path
) -> None:
    services, best = tuned_compose
    tfserving = services["tfserving"]
    ran = _run_entry_point(
        [*tfserving["entrypoint"], *tfserving["command"]],
        _binds(tfserving),
        tmp_path,
        "tensorflow_model_server",
    )
    flags = _last_flags(ran["argv"])
    assert flags["batching_parameters_file"] == str(best / "tfserving" / "batching_parameters.txt")
    assert flags["tensorflow_intra_op_parallelism"] == "2"
    assert flags["tensorflow_inter_op_parallelism"] == "2"
    # Everything else of docker-compose.yml's command is passed on unchanged.
    assert ran["argv"][: len(tfserving["command"])] == tfserving["command"]
    assert "max_batch_size { value: 16 }" in Path(flags["batching_parameters_file"]).read_text()


def test_compose_torchserve_gets_the_tuned_environment_and_registration(
    tuned_compose: tuple[dict, Path], tmp_path: Path
) -> None:
    services, best = tuned_compose
    torchserve = services["torchserve"]
    ran = _run_entry_point(
        [*torchserve["entrypoint"], *torchserve["command"]], _binds(torchserve), tmp_path, "python"
    )
    assert ran["argv"][:3] == ["/opt/imgbench/keyguard.py", "--", "torchserve"]
    assert ran["argv"][3:] == torchserve["command"]
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "IMGBENCH_TORCH_THREADS"):
        assert ran["env"][key] == "2", key  # over docker-compose.yml's OMP_NUM_THREADS=1
    tuned = services["torchserve-tuned"]
    assert tuned["entrypoint"] == ["python", "-m", "imgbench.tune.apply"]
    args = _last_flags(tuned["command"])
    assert _binds(tuned)[f"{args['server-config']}/torchserve"] == best / "torchserve"
    assert args["management-url"] == "http://torchserve:8081"
    auth = next(v for v in tuned["volumes"] if v.startswith("torchserve-auth:"))
    assert Path(args["key-file"]).parent.as_posix() == auth.split(":")[1]
    assert tuned["depends_on"]["torchserve"]["condition"] == "service_healthy"


# -- Kubernetes -----------------------------------------------------------------------------------
def _overlay(tmp_path: Path, component: Path) -> Path:
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(K8S / "base", overlay)],
                "components": [os.path.relpath(component, overlay)],
            }
        )
    )
    return overlay


def _deployment(docs: list[dict], name: str) -> dict:
    return next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name)


def _config_maps(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}


def _mounted_config_maps(pod: dict, container: dict) -> dict[str, tuple[str, str | None]]:
    """mount path -> (config map name, subPath) of a container's config-map volumes."""
    volumes = {v["name"]: v["configMap"]["name"] for v in pod.get("volumes", []) if "configMap" in v}
    return {
        m["mountPath"]: (volumes[m["name"]], m.get("subPath"))
        for m in container.get("volumeMounts", [])
        if m["name"] in volumes
    }


def test_the_shipped_best_folder_is_what_tune_writes_for_the_defaults(tmp_path: Path) -> None:
    written = write_best(tmp_path)
    shipped = [p for p in (COMPONENT / "best").rglob("*") if p.is_file()]
    assert relative_names(shipped, COMPONENT / "best") == relative_names(written, tmp_path)
    hint = "regenerate: .venv/core/bin/python tests/deploy/test_tuned_config.py"
    for path in written:
        assert (COMPONENT / "best" / path.relative_to(tmp_path)).read_text() == path.read_text(), hint


def test_the_k8s_component_renders_validates_and_mounts_tunes_files(tmp_path: Path) -> None:
    component = tmp_path / "tuned-config"
    shutil.copytree(COMPONENT, component)
    shutil.rmtree(component / "best")
    write_best(component / "best", TUNED)  # `cp -r RUN_DIR/best/. .../best/` after a tune
    docs = render_kustomization(_overlay(tmp_path, component))
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    validate = tool("kubernetes-validate", "install the dev extra: scripts/setup.sh core")
    result = run([validate, "--strict", "--quiet", str(rendered)])
    assert result.returncode == 0 and "ERROR" not in result.stdout + result.stderr, result.stdout
    maps = _config_maps(docs)
    best = component / "best"
    # Every ready file is in a config map, with tune's content.
    in_maps = {
        (server, key): text for server in READY_FILES for key, text in maps[f"{server}-tuned"]["data"].items()
    }
    for server, model in MODELS.items():
        for name in ready_files(server, model):
            key = "config.pbtxt" if server == "triton" else Path(name).name
            assert in_maps[(server, key)] == (best / name).read_text(), name

    triton = _deployment(docs, "triton")["spec"]["template"]["spec"]
    (container,) = triton["containers"]
    repository = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--model-repository="))
    mounts = _mounted_config_maps(triton, container)
    assert mounts[f"{repository}/{MODELS['triton']}/config.pbtxt"] == (
        maps["triton-tuned"]["metadata"]["name"],
        "config.pbtxt",
    )

    tfserving = _deployment(docs, "tfserving")["spec"]["template"]["spec"]
    (container,) = tfserving["containers"]
    mounts = _mounted_config_maps(tfserving, container)
    ran = _run_entry_point(
        [*container["command"], *container["args"]],
        {"/best/tfserving": best / "tfserving"},
        tmp_path,
        "tensorflow_model_server",
    )
    assert mounts["/best/tfserving"][0] == maps["tfserving-tuned"]["metadata"]["name"]
    flags = _last_flags(ran["argv"])
    assert flags["batching_parameters_file"] == str(best / "tfserving" / "batching_parameters.txt")
    assert flags["tensorflow_intra_op_parallelism"] == flags["tensorflow_inter_op_parallelism"] == "2"

    torchserve = _deployment(docs, "torchserve")["spec"]["template"]["spec"]
    (container,) = torchserve["containers"]
    assert (
        _mounted_config_maps(torchserve, container)["/best/torchserve"][0]
        == (maps["torchserve-tuned"]["metadata"]["name"])
    )
    ran = _run_entry_point(
        [*container["command"], *container["args"]],
        {"/best/torchserve": best / "torchserve"},
        tmp_path,
        "python",
    )
    assert ran["argv"][:3] == ["/opt/imgbench/keyguard.py", "--", "torchserve"]
    assert ran["env"]["IMGBENCH_TORCH_THREADS"] == "2"
    sidecar = next(c for c in torchserve["initContainers"] if c["name"] == "tuned-config")
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["command"] == ["python", "-m", "imgbench.tune.apply"]
    args = _last_flags(sidecar["args"])
    sidecar_mounts = _mounted_config_maps(torchserve, sidecar)
    assert (
        sidecar_mounts[f"{args['server-config']}/torchserve"][0]
        == maps["torchserve-tuned"]["metadata"]["name"]
    )
    auth = {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "torchserve-auth"}
    assert Path(args["key-file"]).parent.as_posix() in auth
    assert args["management-url"] == "http://127.0.0.1:8081"


if __name__ == "__main__":
    target = COMPONENT / "best"
    shutil.rmtree(target, ignore_errors=True)
    for path in write_best(target):
        print(path.relative_to(ROOT))
