"""The catalog's architectures as PyTorch modules: one builder per name, random weights, any class count.

>>> model = build_model("resnet18", num_classes=10)
>>> sum(p.numel() for p in model.parameters())
11181642
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final

import timm
import torchvision.models as tvm
from torch import nn

from imgbench.catalog import CATALOG, get_entry
from imgbench.errors import ImgbenchError


def _torchvision(name: str) -> Callable[[int], nn.Module]:
    builder = getattr(tvm, name)
    # weights=None: random initialization, so nothing is ever downloaded.
    return lambda num_classes: builder(weights=None, num_classes=num_classes)


def _timm(name: str) -> Callable[[int], nn.Module]:
    return lambda num_classes: timm.create_model(name, pretrained=False, num_classes=num_classes)


BUILDERS: Final = MappingProxyType(
    {
        "resnet18": _torchvision("resnet18"),
        "resnet50": _torchvision("resnet50"),
        "resnet152": _torchvision("resnet152"),
        "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
        "mobilenet_v3_large": _torchvision("mobilenet_v3_large"),
        "mobilenetv4_conv_small": _timm("mobilenetv4_conv_small"),
        "vit_b_16": _torchvision("vit_b_16"),
        "vit_l_16": _torchvision("vit_l_16"),
    }
)
# The catalog is the contract shared with trainer-tf: this module must build exactly its names.
if set(BUILDERS) != set(CATALOG):
    raise RuntimeError(
        f"trainer_pt.models and imgbench.catalog disagree: {sorted(set(BUILDERS) ^ set(CATALOG))}"
    )


def build_model(
    name: str, num_classes: int, image_size: int | None = None, bn_momentum: float | None = None
) -> nn.Module:
    """A randomly initialized ``name`` with ``num_classes`` outputs.

    ``bn_momentum`` (PyTorch convention: weight of the new batch) overrides the architecture's own
    when given; None keeps it. MobileNetV3's 0.01 leaves running statistics near their initial values
    after the few hundred steps a small dataset gives, and evaluation then predicts one class.
    Unknown names and inputs below the architecture's minimum size raise ``ImgbenchError``.
    """
    entry = get_entry(name)  # names every catalog entry when ``name`` is unknown
    if num_classes < 2:
        raise ImgbenchError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    if image_size is not None and image_size < entry.min_image_size:
        raise ImgbenchError(
            f"{name} needs images of at least {entry.min_image_size} px, got --image-size {image_size}"
        )
    if name.startswith("vit_") and image_size is not None and image_size != 224:
        # torchvision's ViT bakes the position-embedding grid into the model.
        model = getattr(tvm, name)(weights=None, num_classes=num_classes, image_size=image_size)
    else:
        model = BUILDERS[name](num_classes)
    if bn_momentum is not None:
        if not 0.0 < bn_momentum <= 1.0:
            raise ImgbenchError(f"--bn-momentum must be in (0, 1], got {bn_momentum}")
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = bn_momentum
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
