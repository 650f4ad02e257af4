"""The images imgbench builds, statically: framework layers that images share really are the same
instructions with the pinned versions, every built image is built (never pulled), the offline override
only swaps images for named stand-ins, and both compose files validate with Compose v2 when it is here.
The containers suite (tests/containers) then builds and runs them for real."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from deploy_support import COMPOSE_FILE, ROOT, run

OFFLINE_FILE = ROOT / "deploy" / "compose" / "offline.yml"
# Dockerfiles that share a framework layer, and the RUN line that ends that layer.
SHARED_LAYERS = {
    "torch": (
        ["services/trainer-pt/Dockerfile", "services/serving/torchserve/Dockerfile"],
        "torchvision==${TORCHVISION_VERSION}",
    ),
    "tensorflow": (
        [
            "services/trainer-tf/Dockerfile",
            "services/serving/tfserving/Dockerfile",
            "services/loadgen/Dockerfile",
        ],
        "tensorflow==${TENSORFLOW_VERSION}",
    ),
}
# ARG default -> (requirements file, package) whose pin it must equal
PINNED_ARGS = {
    "TORCH_VERSION": ("services/trainer-pt/requirements.txt", "torch"),
    "TORCHVISION_VERSION": ("services/trainer-pt/requirements.txt", "torchvision"),
    "TENSORFLOW_VERSION": ("services/trainer-tf/requirements.txt", "tensorflow"),
}


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions, continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    return [re.sub(r"\s+", " ", line).strip() for line in joined.splitlines() if line.strip()]


def _prefix(dockerfile: str, last: str) -> list[str]:
    """The instructions from the first FROM up to the one containing ``last`` (stage names dropped)."""
    lines = _instructions((ROOT / dockerfile).read_text(encoding="utf-8"))
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM "))
    end = next(i for i, line in enumerate(lines) if last in line)
    return [re.sub(r"^(FROM \S+) AS \S+$", r"\1", line) for line in lines[start : end + 1]]


@pytest.mark.parametrize("layer", sorted(SHARED_LAYERS))
def test_shared_framework_layers_are_the_same_instructions(layer: str) -> None:
    dockerfiles, last = SHARED_LAYERS[layer]
    first, *others = dockerfiles
    expected = _prefix(first, last)
    for other in others:
        assert _prefix(other, last) == expected, (
            f"{other}: the {layer} layer's instructions differ from {first}'s, so the images would carry "
            "two copies of it"
        )


def _pin(requirements: str, package: str) -> str:
    text = (ROOT / requirements).read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(package)}==(\S+)", text, re.M)
    assert match, f"{requirements} does not pin {package}"
    return match.group(1)


@pytest.mark.parametrize("dockerfile", sorted({f for files, _ in SHARED_LAYERS.values() for f in files}))
def test_framework_versions_are_the_requirements_pins(dockerfile: str) -> None:
    text = (ROOT / dockerfile).read_text(encoding="utf-8")
    found = dict(re.findall(r"^ARG (\w+_VERSION)=(\S+)", text, re.M))
    assert found, f"{dockerfile}: no framework version ARG"
    for arg, value in found.items():
        requirements, package = PINNED_ARGS[arg]
        assert value == _pin(requirements, package), f"{dockerfile}: {arg}={value} but {requirements} pins it"


def _services(path: Path) -> dict[str, dict]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))["services"]


def test_every_image_imgbench_builds_is_built_never_pulled() -> None:
    merged = _services(COMPOSE_FILE)
    for name, service in _services(OFFLINE_FILE).items():
        merged[name] = {**merged.get(name, {}), **service}
    for name, service in merged.items():
        image = service.get("image", "")
        if "build" in service or image.startswith("imgbench/"):
            assert "build" in service, f"{name}: {image} is imgbench's image but has no build section"
            assert service.get("pull_policy") == "build", (
                f"{name}: pull_policy: build, or compose pulls {image}"
            )


def test_the_user_facing_file_has_no_local_stand_ins() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert "imgbench-local/" not in text and "standin" not in text
    services = _services(COMPOSE_FILE)
    assert services["tfserving"]["image"].startswith("tensorflow/serving:")
    assert services["triton"]["image"].startswith("nvcr.io/nvidia/tritonserver:")


def test_the_offline_override_names_each_stand_in() -> None:
    text = OFFLINE_FILE.read_text(encoding="utf-8")
    overridden = _services(OFFLINE_FILE)
    official = _services(COMPOSE_FILE)
    for name, service in overridden.items():
        image = service.get("image")
        if image and image != official[name].get("image") and name != "volumes-init":
            block = text[text.index(f"  {name}:\n") :]
            assert "STAND-IN" in block[: block.index("image:")], (
                f"{name}: say STAND-IN where {image} replaces it"
            )
    # Only images and how they start change (a stand-in's own scratch tmpfs included): the servers'
    # ports, volumes and dependencies are the user's.
    for name, service in overridden.items():
        allowed = {"image", "pull_policy", "build", "entrypoint", "command", "profiles", "tmpfs"}
        assert set(service) <= allowed, name


@pytest.mark.parametrize("files", [[COMPOSE_FILE], [COMPOSE_FILE, OFFLINE_FILE]], ids=["user", "offline"])
def test_compose_v2_validates(files: list[Path]) -> None:
    docker = shutil.which("docker")
    if docker is None or run([docker, "compose", "version"]).returncode != 0:
        pytest.skip("Docker Compose v2 is not installed: scripts/setup.sh (scripts/containers.sh install)")
    argv = [docker, "compose", *[arg for f in files for arg in ("-f", str(f))]]
    for profile in ([], ["--profile", "gpu"]):
        result = run([*argv, *profile, "config", "-q"])
        assert result.returncode == 0, result.stderr


def test_exports_are_within_what_the_official_tritons_onnx_runtime_reads() -> None:
    """Triton 24.10 (the compose image) ships ONNX Runtime 1.19, which reads ONNX opsets up to 21 (and IR
    versions up to 10, checked on the exported files by the trainers' export tests): the opsets the
    trainers may export stay inside that."""
    import argparse

    from imgbench.trainer_cli import add_export_arguments

    ort_119_max_opset = 21
    parser = argparse.ArgumentParser()
    add_export_arguments(parser)
    opset = next(a for a in parser._actions if "--opset" in a.option_strings)
    assert opset.choices is not None and max(opset.choices) <= ort_119_max_opset
    assert "image: nvcr.io/nvidia/tritonserver:24.10-py3" in COMPOSE_FILE.read_text(encoding="utf-8")
