"""The accelerator a run asked for and the one it got, in words both trainers share.

- :func:`require_gpu`: ``--device cuda`` (the GPU profile and overlay pass it) with no GPU visible is
  an error naming what the framework saw, never a silent fall back to the CPU;
- :func:`gpu_environment`: the GPU facts every manifest records (name, count, driver, CUDA), from
  ``nvidia-smi`` and the framework's own CUDA build; ``none`` where there is none.

Standard library and the core only: both trainer venvs import it before their framework.

    >>> gpu_environment(0, None, smi=lambda: [])
    {'gpu': 'none', 'gpu_count': '0', 'gpu_driver': 'none', 'cuda': 'none'}
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from imgbench.errors import ImgbenchError


def require_gpu(device_request: str, visible_gpus: int, framework: str) -> None:
    """Raise unless ``--device cuda`` finds at least one GPU (``auto`` and ``cpu`` never raise)."""
    if device_request != "cuda" or visible_gpus > 0:
        return
    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    why = f"CUDA_VISIBLE_DEVICES={hidden!r}" if hidden is not None else "CUDA_VISIBLE_DEVICES is unset"
    raise ImgbenchError(
        f"--device cuda: {framework} sees no GPU (visible GPUs: {visible_gpus}; {why}); "
        "run on a GPU (compose: --profile gpu with the NVIDIA container toolkit; k8s: overlays/gpu), "
        "or pass --device cpu or --device auto"
    )


def nvidia_smi_gpus() -> list[tuple[str, str]]:
    """(name, driver version) of each GPU ``nvidia-smi`` lists; [] without the tool or a GPU."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return []
    try:
        out = subprocess.run(
            [tool, "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(",") for line in out.splitlines() if line.strip()]
    return [(row[0].strip(), row[-1].strip()) for row in rows]


def gpu_environment(
    visible_gpus: int,
    cuda_version: str | None,
    smi: Callable[[], list[tuple[str, str]]] = nvidia_smi_gpus,
) -> dict[str, str]:
    """The manifest's GPU facts: ``gpu`` (name), ``gpu_count`` (the GPUs the framework used),
    ``gpu_driver``, ``cuda`` (the framework's CUDA build)."""
    gpus = smi() if visible_gpus else []
    return {
        "gpu": gpus[0][0] if gpus else "none",
        "gpu_count": str(visible_gpus),
        "gpu_driver": gpus[0][1] if gpus else "none",
        "cuda": cuda_version if visible_gpus and cuda_version else "none",
    }
