from __future__ import annotations

import json
from pathlib import Path

import pytest
from factories import make_manifest

from imgbench.errors import ManifestError
from imgbench.manifest import InputSpec, load_manifest, write_manifest
from imgbench.paths import ModelRepository


def test_round_trip(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    manifest = make_manifest()
    write_manifest(repo.manifest_path("pt_resnet18"), manifest)
    loaded = load_manifest(repo.manifest_path("pt_resnet18"))
    assert loaded == manifest
    assert loaded.input.image_size == (32, 32)
    assert loaded.num_classes == 10 and loaded.logits_name == "logits"
    assert repo.models() == ["pt_resnet18"]
    assert not list(repo.manifests_dir.glob(".*.tmp")), "temporary file left behind"


def test_missing_manifest_names_the_path(tmp_path: Path) -> None:
    path = ModelRepository(tmp_path).manifest_path("tf_resnet18")
    with pytest.raises(ManifestError, match=r"no manifest at .*tf_resnet18\.json"):
        load_manifest(path)


def test_invalid_json_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pt_resnet18.json"
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("input"), "input"),
        (lambda d: d.update(model="resnet18"), "model"),
        (lambda d: d["input"].update(layout="NHWC"), "NHWC"),
        (lambda d: d["input"].update(shape=[None, 3, 32]), "4 dimensions"),
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d.update(schema_version=99), "schema_version=99"),
        (lambda d: d.update(architecture="resnet50"), "does not match"),
        (lambda d: d["training"].update(top1=1.7), "top1"),
    ],
)
def test_malformed_manifests_are_rejected_with_the_field_named(tmp_path: Path, mutate, message: str) -> None:
    data = json.loads(make_manifest().model_dump_json())
    mutate(data)
    path = tmp_path / "pt_resnet18.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        load_manifest(path)


def test_tensorflow_manifest_takes_nhwc() -> None:
    manifest = make_manifest("tensorflow")
    assert manifest.input.layout == "NHWC" and manifest.input.image_size == (32, 32)
    with pytest.raises(ValueError, match="tensorflow models take NHWC"):
        make_manifest("tensorflow", input=InputSpec(name="image", shape=[None, 3, 32, 32], layout="NCHW"))


def test_repository_paths_and_versions(tmp_path: Path) -> None:
    repo = ModelRepository(tmp_path)
    assert repo.next_version("pt_resnet18") == 1
    repo.triton_version_dir("pt_resnet18", 1).mkdir(parents=True)
    repo.tfserving_version_dir("pt_resnet18", 3).mkdir(parents=True)
    assert repo.versions("pt_resnet18") == [1, 3]
    assert repo.next_version("pt_resnet18") == 4
    assert repo.torchserve_mar("pt_resnet18") == tmp_path / "torchserve" / "pt_resnet18.mar"
    assert repo.tflite("tf_resnet18", "int8").name == "model_int8.tflite"


@pytest.mark.parametrize("bad", ["resnet18", "PT_resnet18", "jax_resnet18", "pt_", "pt_../x"])
def test_bad_model_names_are_rejected(tmp_path: Path, bad: str) -> None:
    from imgbench.errors import ImgbenchError

    with pytest.raises(ImgbenchError, match="<pt\\|tf>_<architecture>"):
        ModelRepository(tmp_path).manifest_path(bad)
