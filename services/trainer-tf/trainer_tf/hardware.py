"""Names the machine a figure was measured on (absolute times are only quoted with the hardware)."""

from __future__ import annotations

import contextlib
import platform

from imgbench.trainer_cli import cpu_name, usable_cores

__all__ = ["cpu_name", "describe_device", "environment", "usable_cores"]


def describe_device() -> str:
    """e.g. ``cpu: Intel(R) Xeon(R) ... (2 cores)`` or ``gpu: NVIDIA H100 ×1``."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return f"gpu: {details.get('device_name', 'GPU')} ×{len(gpus)}"
    from imgbench.trainer_cli import describe_cpu

    return describe_cpu()


def environment() -> dict[str, str]:
    """Library versions and hardware, for manifests and benchmark results."""
    import importlib.metadata as metadata

    versions = {"python": platform.python_version()}
    for package in ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert", "numpy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    versions["device"] = describe_device()
    versions.update(_gpu_environment())
    versions["platform"] = platform.platform()
    return versions


def _gpu_environment() -> dict[str, str]:
    """GPU name, count, driver and TensorFlow's CUDA build (``imgbench.devices``)."""
    import tensorflow as tf

    from imgbench.devices import gpu_environment

    gpus = tf.config.list_physical_devices("GPU")
    return gpu_environment(len(gpus), tf.sysconfig.get_build_info().get("cuda_version"))
