"""A learnable synthetic ImageFolder dataset of any size and class count, for large shapes
(224×224, 1000 classes) that the digits cannot cover. Each class is a random low-frequency colour
pattern; each image is that pattern shifted, scaled in brightness and noised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.data.imagefolder import LabelledImage, write_imagefolder
from imgbench.errors import DatasetError

_PATTERN_GRID = 6


def _class_patterns(classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.integers(0, 256, size=(classes, _PATTERN_GRID, _PATTERN_GRID, 3), dtype=np.uint8)
    return np.stack(
        [
            np.asarray(Image.fromarray(c, mode="RGB").resize((size, size), Image.Resampling.BILINEAR))
            for c in coarse
        ]
    )


def write_synthetic(
    out: Path,
    classes: int,
    size: int,
    per_class: int,
    val_fraction: float = 0.2,
    seed: int = 0,
    force: bool = False,
    if_exists: str = "error",
) -> Path:
    """Write ``per_class`` images of each of ``classes`` classes, split ``val_fraction`` to val."""
    if classes < 2:
        raise DatasetError(f"--classes must be at least 2, got {classes}")
    if size < 8:
        raise DatasetError(f"--size must be at least 8, got {size}")
    n_val = round(per_class * val_fraction)
    if not 1 <= n_val < per_class:
        raise DatasetError(
            f"--per-class {per_class} with --val-fraction {val_fraction} leaves no image for train or val"
        )
    rng = np.random.default_rng(seed)
    patterns = _class_patterns(classes, size, rng)
    width = len(str(classes - 1))

    def images() -> Iterator[LabelledImage]:
        for label in range(classes):
            for i in range(per_class):
                shift = rng.integers(-size // 8, size // 8 + 1, size=2)
                image = np.roll(patterns[label].astype(np.float32), tuple(shift), axis=(0, 1))
                image = image * rng.uniform(0.7, 1.3) + rng.normal(0.0, 12.0, size=image.shape)
                yield LabelledImage(
                    split="val" if i < n_val else "train",
                    class_name=f"class_{label:0{width}d}",
                    file_name=f"img_{i:05d}.png",
                    pixels=np.clip(image, 0, 255).astype(np.uint8),
                )

    info = {
        "name": f"synthetic_{classes}c_{size}px",
        "source": "imgbench synthetic",
        "image_size": size,
        "val_fraction": val_fraction,
        "seed": seed,
        "classes": [f"class_{c:0{width}d}" for c in range(classes)],
    }
    return write_imagefolder(out, images(), info, force, if_exists)
