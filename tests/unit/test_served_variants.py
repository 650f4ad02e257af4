"""Served variants (``<model>_int8``): one name rule, the base model's manifest, the trainer's Triton
directory for it, and native Triton's python-backend copy serving it next to its model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from factories import make_manifest

from imgbench.errors import ImgbenchError
from imgbench.manifest import write_manifest
from imgbench.paths import ModelRepository, project_root, served_variant, split_served_variant
from imgbench.triton_config import TritonModelSpec, render_config, write_served_variant


def test_variant_names_split_and_compose() -> None:
    assert served_variant("pt_resnet50", "int8") == "pt_resnet50_int8"
    assert split_served_variant("pt_resnet50_int8") == ("pt_resnet50", "int8")
    assert split_served_variant("pt_mobilenet_v3_small_dynamic") == ("pt_mobilenet_v3_small", "dynamic")
    assert split_served_variant("pt_resnet50") == ("pt_resnet50", None)
    with pytest.raises(ImgbenchError, match="unknown served variant 'fp16'; known: int8, dynamic"):
        served_variant("pt_resnet50", "fp16")


def test_a_variant_reads_its_base_models_manifest(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    assert repo.manifest_path("pt_resnet18_int8") == repo.manifest_path("pt_resnet18")
    with pytest.raises(ImgbenchError, match=r"is not '<pt\|tf>_<architecture>'"):
        repo.manifest_path("PT_resnet18_int8")


def _exported(repo: ModelRepository, tmp_path: Path) -> tuple[TritonModelSpec, Path]:
    manifest = make_manifest("pytorch")
    spec = TritonModelSpec(manifest.model, "image", [3, 32, 32], "logits", 10, max_batch_size=16)
    repo.triton_version_dir(manifest.model, 1).mkdir(parents=True)
    repo.triton_config(manifest.model).write_text(render_config(spec, "onnxruntime"))
    repo.triton_onnx(manifest.model, 1).write_bytes(b"fp32 onnx")
    int8 = tmp_path / "model_int8.onnx"
    int8.write_bytes(b"int8 onnx")
    return spec, int8


def test_the_variant_is_published_as_its_own_triton_model(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path / "repo")
    spec, int8 = _exported(repo, tmp_path)
    paths = write_served_variant(repo, spec, "int8", int8, 1)
    name = "pt_resnet18_int8"
    assert paths["triton_model"] == name and paths["triton_onnx"] == f"triton/{name}/1/model.onnx"
    assert repo.triton_onnx(name, 1).read_bytes() == b"int8 onnx"
    config = repo.triton_config(name).read_text()
    assert config.startswith(f'name: "{name}"\n') and "max_batch_size: 16" in config
    assert (
        "KIND_CPU" in config and "KIND_GPU" in (repo.triton_model_dir(name) / "configs/gpu.pbtxt").read_text()
    )
    with pytest.raises(ImgbenchError, match="pt_resnet18_int8 version 1 was served before"):
        write_served_variant(repo, spec, "int8", int8, 1)


def test_native_triton_serves_a_variant_once_its_base_manifest_exists(tmp_path: Path) -> None:
    sys.path.insert(0, str(project_root() / "services" / "serving" / "triton"))
    try:
        from triton_native.repository import sync
    finally:
        sys.path.pop(0)
    repo = ModelRepository(tmp_path / "repo")
    spec, int8 = _exported(repo, tmp_path)
    write_served_variant(repo, spec, "int8", int8, 1)
    assert sync(repo).models == []  # no manifest yet: neither is complete
    repo.manifests_dir.mkdir()
    write_manifest(repo.manifest_path(spec.name), make_manifest("pytorch"))
    result = sync(repo)
    assert result.models == ["pt_resnet18", "pt_resnet18_int8"]
    target = repo.triton_python_model_dir("pt_resnet18_int8")
    config = (target / "config.pbtxt").read_text()
    assert 'name: "pt_resnet18_int8"' in config and 'backend: "python"' in config
    assert (target / "1" / "model.onnx").resolve() == repo.triton_onnx("pt_resnet18_int8", 1).resolve()
    assert sync(repo).changed == []
