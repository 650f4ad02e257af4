"""Every catalog name builds in Keras with the parameter count of its torchvision/timm twin."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import pytest
from trainer_tf.models import architectures, build_model, count_parameters

import imgbench
from imgbench.catalog import CATALOG
from imgbench.errors import ImgbenchError

REFERENCE = json.loads((Path(imgbench.__file__).parent / "reference_params.json").read_text())
TOLERANCE = 0.005
# ViT's position embedding is sized for 224×224; the others' counts do not depend on the image size.
SIZES = {name: (224 if name.startswith("vit_") else 32) for name in CATALOG}
CHEAP = {"resnet18", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenetv4_conv_small"}


def _cases():
    for name in CATALOG:
        marks = [pytest.mark.slow] if name in {"resnet152", "vit_b_16", "vit_l_16"} else []
        yield pytest.param(name, 10, id=f"{name}-10", marks=marks)
        if name in CHEAP:
            yield pytest.param(name, 1000, id=f"{name}-1000")


@pytest.mark.parametrize(("name", "classes"), list(_cases()))
def test_parameter_count_matches_pytorch(name: str, classes: int) -> None:
    keras.backend.clear_session()
    model = build_model(name, classes, SIZES[name])
    ours, theirs = count_parameters(model), REFERENCE[name][str(classes)]
    print(f"{name} @ {classes} classes: keras {ours:,} vs torch {theirs:,} ({(ours - theirs) / theirs:+.3%})")
    assert abs(ours - theirs) / theirs <= TOLERANCE
    assert model.input.name.startswith("image") and model.output_names == ["logits"]
    del model
    keras.backend.clear_session()


def test_every_catalog_name_has_a_builder() -> None:
    assert architectures() == list(CATALOG)


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(ImgbenchError, match=r"unknown model 'resnet19'.*resnet18.*vit_l_16"):
        build_model("resnet19", 10, 32)


def test_batch_norm_momentum_is_pytorch_equivalent() -> None:
    model = build_model("mobilenet_v3_small", 10, 32)
    momenta = {
        layer.momentum
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta == {0.9}  # keras.applications' own would be 0.999


def test_resnet18_matches_torchvision_shapes() -> None:
    """Layer for layer: torchvision's ResNet-18 maps 224×224 to 7×7×512 before pooling."""
    model = build_model("resnet18", 10, 224)
    assert model.get_layer("layer4_1_out").output.shape[1:] == (7, 7, 512)
    assert model.get_layer("maxpool").output.shape[1:] == (56, 56, 64)
    assert not any(
        getattr(layer, "use_bias", False) for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
    )
