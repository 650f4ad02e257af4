"""Real evaluation images as a model's input batch, from its manifest (size, normalization, layout,
dtype): what the tests, the benchmark and the load generator send."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.data.imagefolder import class_folders, image_files
from imgbench.errors import DatasetError
from imgbench.manifest import Manifest


def preprocess(manifest: Manifest, rgb_uint8: np.ndarray) -> np.ndarray:
    """One HxWx3 uint8 image -> the model's input for one image (no batch axis)."""
    height, width = manifest.input.image_size
    image = Image.fromarray(rgb_uint8)
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(manifest.normalization.mean, dtype=np.float32)
    std = np.asarray(manifest.normalization.std, dtype=np.float32)
    pixels = (pixels - mean) / std
    if manifest.input.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels.astype(manifest.input.dtype))


def load_eval_batch(
    manifest: Manifest, dataset_root: Path, split: str = "val", limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(batch, labels) for the first ``limit`` images of ``split`` (class folders named as the
    manifest's class_names), in a stable order."""
    split_dir = Path(dataset_root) / split
    if not split_dir.is_dir():
        raise DatasetError(f"no {split}/ split in {dataset_root}")
    index = {name: i for i, name in enumerate(manifest.class_names)}
    images, labels = [], []
    for class_dir in class_folders(split_dir):
        if class_dir.name not in index:
            raise DatasetError(f"class folder {class_dir} is not one of {manifest.model}'s classes")
        for path in image_files(class_dir):
            with Image.open(path) as image:
                images.append(preprocess(manifest, np.asarray(image.convert("RGB"))))
            labels.append(index[class_dir.name])
    if not images:
        raise DatasetError(f"no images under {split_dir}")
    order = np.random.default_rng(0).permutation(len(images))[:limit]
    return np.stack([images[i] for i in order]), np.asarray([labels[i] for i in order])
