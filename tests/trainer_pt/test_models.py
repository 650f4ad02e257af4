"""The catalog as PyTorch models: every name builds, parameter counts match the checked-in reference
table (imgbench/reference_params.json, which trainer-tf compares Keras against), unknown names fail."""

from __future__ import annotations

import json
from importlib import resources

import pytest
import timm
import torch
import torchvision
from trainer_pt.models import build_model, count_parameters

from imgbench.catalog import CATALOG
from imgbench.errors import ImgbenchError

REFERENCE = json.loads(resources.files("imgbench").joinpath("reference_params.json").read_text())


def _upstream(name: str, num_classes: int) -> torch.nn.Module:
    """Straight from torchvision/timm, bypassing trainer_pt: checks the table and the builders."""
    if name == "mobilenetv4_conv_small":
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    return getattr(torchvision.models, name)(weights=None, num_classes=num_classes)


def test_reference_table_covers_the_catalog() -> None:
    assert set(REFERENCE) == set(CATALOG)
    assert all(set(counts) == {"10", "1000"} for counts in REFERENCE.values())


@pytest.mark.parametrize("name", list(CATALOG))
@pytest.mark.parametrize("num_classes", [10, 1000])
def test_parameter_count_matches_reference(name: str, num_classes: int) -> None:
    # Meta tensors: shapes without memory or initialization, so ViT-L costs milliseconds.
    with torch.device("meta"):
        ours = count_parameters(build_model(name, num_classes))
        upstream = count_parameters(_upstream(name, num_classes))
    print(f"{name} @ {num_classes} classes: {ours:,} parameters")
    assert ours == upstream == REFERENCE[name][str(num_classes)]


def test_cpu_models_run_at_32_pixels() -> None:
    for name in ("resnet18", "mobilenet_v3_small", "mobilenetv4_conv_small"):
        model = build_model(name, 10, image_size=32).eval()
        with torch.inference_mode():
            assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_unknown_name_lists_the_catalog() -> None:
    with pytest.raises(ImgbenchError, match=r"unknown model 'resnet9000'.*resnet18.*vit_l_16"):
        build_model("resnet9000", 10)


def test_too_small_input_for_vit_is_rejected() -> None:
    with pytest.raises(ImgbenchError, match="at least 224"):
        build_model("vit_b_16", 10, image_size=32)


def test_bn_momentum_override() -> None:
    model = build_model("mobilenet_v3_small", 10, bn_momentum=0.1)
    momenta = {m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert momenta == {0.1}
    default = build_model("mobilenet_v3_small", 10)
    assert {m.momentum for m in default.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {0.01}
