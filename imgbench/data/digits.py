"""scikit-learn's bundled handwritten digits (1,797 real 8×8 images, 10 classes, no download)
written as an RGB ImageFolder tree at a chosen size."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from imgbench.data.imagefolder import LabelledImage, stratified_split, write_imagefolder
from imgbench.errors import DatasetError


def _to_rgb(pixels_0_16: np.ndarray, size: int) -> np.ndarray:
    gray = Image.fromarray(np.round(pixels_0_16 * (255.0 / 16.0)).astype(np.uint8), mode="L")
    # Bicubic keeps strokes smooth when 8×8 grows to 64×64 or 224×224.
    return np.asarray(gray.resize((size, size), Image.Resampling.BICUBIC).convert("RGB"))


def write_digits(
    out: Path,
    size: int = 64,
    val_fraction: float = 0.2,
    seed: int = 0,
    force: bool = False,
    if_exists: str = "error",
) -> Path:
    """Write the digits dataset under ``out/train`` and ``out/val``, stratified by class.

    >>> write_digits(Path("/tmp/digits"), size=32, force=True)   # doctest: +SKIP
    """
    if size < 8:
        raise DatasetError(f"--size must be at least 8 (the source images are 8×8), got {size}")
    digits = load_digits()
    labels = digits.target.astype(int)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)

    def images() -> Iterator[LabelledImage]:
        for split, indices in (("train", train_idx), ("val", val_idx)):
            for index in indices:
                yield LabelledImage(
                    split=split,
                    class_name=str(labels[index]),
                    file_name=f"digit_{index:04d}.png",
                    pixels=_to_rgb(digits.images[index], size),
                )

    info = {
        "name": "digits",
        "source": "sklearn.datasets.load_digits",
        "image_size": size,
        "val_fraction": val_fraction,
        "seed": seed,
        "classes": [str(c) for c in range(10)],
    }
    return write_imagefolder(out, images(), info, force, if_exists)
