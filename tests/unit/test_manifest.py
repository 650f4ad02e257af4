from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgbench.errors import ManifestError
from imgbench.manifest import (
    DatasetRef,
    EpochRecord,
    ExportRecord,
    InputSpec,
    Manifest,
    TrainingFigures,
    load_manifest,
    write_manifest,
)
from imgbench.paths import ModelRepository


def make_manifest(**overrides: object) -> Manifest:
    fields: dict[str, object] = {
        "model": "pt_resnet18",
        "framework": "pytorch",
        "framework_version": "2.14.1",
        "architecture": "resnet18",
        "version": 1,
        "input": InputSpec(name="image", shape=[None, 3, 32, 32], layout="NCHW"),
        "output_names": ["logits"],
        "class_names": [str(i) for i in range(10)],
        "dataset": DatasetRef(
            name="digits", path="/data/digits", num_train=1438, num_eval=359, image_size=32
        ),
        "training": TrainingFigures(
            epochs=1,
            best_epoch=1,
            top1=0.95,
            top5=1.0,
            seconds_per_epoch=3.0,
            images_per_second=480.0,
            peak_memory_bytes=10**9,
            device="cpu",
            parameters=11_181_642,
            history=[
                EpochRecord(
                    epoch=1,
                    train_loss=0.5,
                    val_loss=0.2,
                    top1=0.95,
                    top5=1.0,
                    seconds=3.0,
                    images_per_second=480.0,
                    peak_memory_bytes=10**9,
                )
            ],
        ),
        "exports": {
            "onnx": ExportRecord(
                format="onnx",
                path="triton/pt_resnet18/1/model.onnx",
                n=359,
                top1_agreement=1.0,
                max_abs_logit_diff=2e-6,
            )
        },
    }
    fields.update(overrides)
    return Manifest(**fields)  # type: ignore[arg-type]


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
    manifest = make_manifest(
        model="tf_resnet18",
        framework="tensorflow",
        framework_version="2.21.0",
        input=InputSpec(name="image", shape=[None, 32, 32, 3], layout="NHWC"),
    )
    assert manifest.input.image_size == (32, 32)


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
