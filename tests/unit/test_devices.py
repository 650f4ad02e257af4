"""imgbench.devices: the GPU facts manifests record, and --device cuda without a GPU as an error."""

from __future__ import annotations

import pytest

from imgbench.devices import gpu_environment, require_gpu
from imgbench.errors import ImgbenchError


def test_gpu_facts_come_from_nvidia_smi_and_the_framework() -> None:
    facts = gpu_environment(2, "12.8", smi=lambda: [("NVIDIA H200", "570.86"), ("NVIDIA H200", "570.86")])
    assert facts == {"gpu": "NVIDIA H200", "gpu_count": "2", "gpu_driver": "570.86", "cuda": "12.8"}
    # A CUDA build on a machine without a GPU used none: the manifest says none, not the build's CUDA.
    assert gpu_environment(0, "13.0", smi=lambda: [("unused", "1")])["cuda"] == "none"


def test_device_cuda_without_a_gpu_names_what_was_seen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(ImgbenchError, match=r"--device cuda: TensorFlow sees no GPU.*unset.*--device cpu"):
        require_gpu("cuda", 0, "TensorFlow")
