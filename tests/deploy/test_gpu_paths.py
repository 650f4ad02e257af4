"""GPU paths that do what they say (issue 14), statically: in the compose `gpu` profile and the k8s gpu
overlay, each framework gets the same number of GPUs (one by default; trainer-pt's torchrun processes
equal to its GPUs), the GPU trainers pass the CPU trainers' recipe flags (only the architecture, the
device, the precision and the run folder differ, and the precision is bf16 in both), and Triton on the
GPU loads the GPU config the trainers write."""

from __future__ import annotations

import re

from imgbench.triton_config import GPU_CONFIG_NAME, TRT_CACHE_DIR

# Flags a GPU run may set differently from the CPU run of the same framework; every other flag
# (the recipe, data loading, seed, output layout) must be identical.
MAY_DIFFER = {"--model", "--device", "--amp", "--mixed-precision", "--output-dir"}
TRAINERS = {"trainer-pt": "--amp=bf16", "trainer-tf": "--mixed-precision=bfloat16"}


def _flags(args: list[str]) -> dict[str, str]:
    flags: dict[str, str] = {}
    for arg in args[1:]:  # args[0] is the subcommand
        name, _, value = str(arg).partition("=")
        assert name.startswith("--"), f"pass flags as --name=value: {arg}"
        flags[name] = value
    return flags


def _recipe(args: list[str]) -> dict[str, str]:
    return {k: v for k, v in _flags(args).items() if k not in MAY_DIFFER}


def _gpu_count(service: dict) -> str:
    (device,) = service["deploy"]["resources"]["reservations"]["devices"]
    return str(device["count"])


def test_compose_gpu_trainers_use_the_cpu_recipe(compose: dict) -> None:
    services = compose["services"]
    for cpu_name, precision in TRAINERS.items():
        cpu, gpu = services[cpu_name]["command"], services[f"{cpu_name}-gpu"]["command"]
        assert cpu[0] == gpu[0] == "train"
        assert _recipe(gpu) == _recipe(cpu), f"{cpu_name}-gpu drops or changes recipe flags"
        assert "--device=cuda" in gpu and precision in gpu, cpu_name
        assert "--model=${IMGBENCH_GPU_ARCH:-resnet152}" in gpu, cpu_name


def test_compose_gives_each_framework_the_same_gpus(compose: dict) -> None:
    services = compose["services"]
    counts = {name: _gpu_count(services[name]) for name in ("trainer-pt-gpu", "trainer-tf-gpu", "triton-gpu")}
    assert set(counts.values()) == {"${IMGBENCH_GPUS:-1}"}, counts  # one GPU each unless told N
    entry = services["trainer-pt-gpu"]["entrypoint"]
    assert entry[0] == "torchrun" and "--nproc-per-node=${IMGBENCH_GPUS:-1}" in entry
    assert entry[-2:] == ["-m", "trainer_pt"]
    # trainer-tf's MirroredStrategy takes every visible GPU: nothing may hide them.
    assert "CUDA_VISIBLE_DEVICES" not in services["trainer-tf-gpu"].get("environment", {})
    assert services["trainer-tf-gpu"]["build"]["args"]["VARIANT"] == "gpu"
    assert services["trainer-tf-gpu"]["image"] != services["trainer-tf"]["image"]


def test_compose_triton_gpu_loads_the_gpu_config(compose: dict) -> None:
    triton = compose["services"]["triton-gpu"]
    assert f"--model-config-name={GPU_CONFIG_NAME}" in triton["command"]
    assert f"trt-cache:{TRT_CACHE_DIR}" in triton["volumes"]
    assert "--model-config-name" not in " ".join(compose["services"]["triton"]["command"])


def _pods(docs: list[dict]) -> dict[str, dict]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d["spec"]["template"]["spec"]
        for d in docs
        if d["kind"] in ("Job", "Deployment")
    }


def test_k8s_gpu_overlay_uses_the_base_recipe_and_one_gpu_each(
    k8s_cpu: list[dict], k8s_gpu: list[dict]
) -> None:
    cpu_pods, gpu_pods = _pods(k8s_cpu), _pods(k8s_gpu)
    for name, precision in TRAINERS.items():
        cpu = cpu_pods[f"Job/{name}"]["containers"][0]
        gpu = gpu_pods[f"Job/{name}-gpu"]["containers"][0]
        assert _recipe(gpu["args"]) == _recipe(cpu["args"]), f"Job/{name}-gpu drops or changes recipe flags"
        assert "--device=cuda" in gpu["args"] and precision in gpu["args"], name
        assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1, name
    # TensorFlow's CUDA comes with the GPU build of the image only.
    assert gpu_pods["Job/trainer-tf-gpu"]["containers"][0]["image"].startswith("imgbench/trainer-tf-gpu:")
    pt = gpu_pods["Job/trainer-pt-gpu"]["containers"][0]
    (nproc,) = [int(m.group(1)) for a in pt["command"] if (m := re.fullmatch(r"--nproc-per-node=(\d+)", a))]
    assert nproc == pt["resources"]["limits"]["nvidia.com/gpu"], "one torchrun process per GPU"
    triton = gpu_pods["Deployment/triton"]
    assert f"--model-config-name={GPU_CONFIG_NAME}" in triton["containers"][0]["args"]
    assert {"name": "trt-cache", "mountPath": TRT_CACHE_DIR} in triton["containers"][0]["volumeMounts"]
    assert any(v["name"] == "trt-cache" for v in triton["volumes"])
