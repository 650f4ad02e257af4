"""The architectures both trainers build, by one name each. A name means the same network in
PyTorch and in Keras, so a comparison between ``pt_<name>`` and ``tf_<name>`` compares frameworks,
not architectures.

Reference parameter counts (at 10 classes, the digits default, and at 1000) come from torchvision/timm;
trainer-pt's tests recompute them from the real models, and trainer-tf's tests compare Keras against
them, so no test process imports both frameworks.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from imgbench.errors import ImgbenchError


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: str
    cpu_friendly: bool
    pytorch_source: str
    min_image_size: int
    """The smallest input the architecture accepts (ViT needs the patch grid)."""


CATALOG: Final = MappingProxyType(
    {
        entry.name: entry
        for entry in (
            CatalogEntry("resnet18", "resnet", True, "torchvision.models.resnet18", 32),
            CatalogEntry("resnet50", "resnet", False, "torchvision.models.resnet50", 32),
            CatalogEntry("resnet152", "resnet", False, "torchvision.models.resnet152", 32),
            CatalogEntry(
                "mobilenet_v3_small", "mobilenet", True, "torchvision.models.mobilenet_v3_small", 32
            ),
            CatalogEntry(
                "mobilenet_v3_large", "mobilenet", False, "torchvision.models.mobilenet_v3_large", 32
            ),
            CatalogEntry("mobilenetv4_conv_small", "mobilenet", True, "timm mobilenetv4_conv_small", 32),
            CatalogEntry("vit_b_16", "vit", False, "torchvision.models.vit_b_16", 224),
            CatalogEntry("vit_l_16", "vit", False, "torchvision.models.vit_l_16", 224),
        )
    }
)

CPU_DEFAULT_ARCHITECTURE: Final = "mobilenet_v3_small"
GPU_DEFAULT_ARCHITECTURE: Final = "resnet152"


def get_entry(name: str) -> CatalogEntry:
    """The catalog entry for ``name``; an unknown name lists the known ones.

    >>> get_entry("resnet18").family
    'resnet'
    """
    try:
        return CATALOG[name]
    except KeyError:
        raise ImgbenchError(f"unknown model {name!r}; the catalog has: {', '.join(CATALOG)}") from None
