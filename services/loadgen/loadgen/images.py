"""Real validation images, preprocessed exactly as the model's manifest says (the trainers' eval
transform: resize the shorter side to ``size·256/224``, center crop, ``(pixel/255 - mean)/std``, in the
manifest's layout and dtype), with their labels, as the batches the users send.

    >>> pool = load_pool(manifest, Path("data/digits"), limit=256)    # doctest: +SKIP
    >>> pool.images.shape, pool.labels[:4]                            # doctest: +SKIP
    ((256, 3, 64, 64), array([0, 0, 0, 0]))
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from imgbench.data.check import require_clean
from imgbench.data.imagefolder import IMAGE_SUFFIXES
from imgbench.dynamic_shapes import at_size
from imgbench.errors import DatasetError
from imgbench.manifest import Manifest

RESIZE_RATIO = 256 / 224  # the trainers' eval transform (trainer_pt.data.eval_transform)


@dataclass(frozen=True)
class ImagePool:
    images: np.ndarray
    """[N, ...] in the manifest's layout and dtype, ready to send."""
    labels: np.ndarray
    """[N] class indices into the manifest's class names."""
    files: tuple[str, ...]
    references: np.ndarray | None = None
    """[N] the reference model's top-1 for each image at rest (``--reference-model``), else None."""
    sizes: np.ndarray | None = None
    """[N] each image's side in px with ``--image-sizes`` (``images`` is then an object array of rows
    of different shapes), else None: one size, ``images`` one array."""

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, keep: np.ndarray) -> ImagePool:
        references = self.references[keep] if self.references is not None else None
        sizes = self.sizes[keep] if self.sizes is not None else None
        return ImagePool(
            self.images[keep], self.labels[keep], tuple(np.asarray(self.files)[keep]), references, sizes
        )

    def with_references(self, references: np.ndarray) -> ImagePool:
        return ImagePool(
            self.images, self.labels, self.files, np.asarray(references, dtype=np.int64), self.sizes
        )

    def stack(self, index: np.ndarray) -> np.ndarray:
        """The images at ``index`` as one contiguous batch (all of one size)."""
        if self.sizes is None:
            return np.ascontiguousarray(self.images[index])
        return np.ascontiguousarray(np.stack(list(self.images[index])))

    def batch_indices(self, batch_size: int, count: int) -> list[np.ndarray]:
        """``count`` batches of consecutive images, wrapping around the pool; with mixed sizes the
        batches take turns at the sizes, each of consecutive images of its size."""
        if len(self) == 0:
            raise DatasetError("the image pool is empty: nothing to send")
        if self.sizes is None:
            return [np.arange(b * batch_size, (b + 1) * batch_size) % len(self) for b in range(count)]
        by_size = {int(s): np.flatnonzero(self.sizes == s) for s in np.unique(self.sizes)}
        order = sorted(by_size)
        out = []
        for b in range(count):
            members = by_size[order[b % len(order)]]
            turn = b // len(order)
            out.append(members[np.arange(turn * batch_size, (turn + 1) * batch_size) % len(members)])
        return out

    def reference_batches(self, batch_size: int, count: int) -> list[np.ndarray] | None:
        """The reference top-1s of :meth:`batches`' images, batch by batch (None without references)."""
        if self.references is None:
            return None
        return [self.references[index] for index in self.batch_indices(batch_size, count)]

    def batches(self, batch_size: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """``count`` batches of consecutive images, wrapping around the pool (:meth:`batch_indices`)."""
        return [(self.stack(index), self.labels[index]) for index in self.batch_indices(batch_size, count)]


def preprocess(image: Image.Image, manifest: Manifest) -> np.ndarray:
    """One PIL image as the model's input row (no batch axis)."""
    spec = manifest.input
    height, width = spec.image_size
    channels = spec.shape[1] if spec.layout == "NCHW" else spec.shape[3]
    image = image.convert("RGB" if channels == 3 else "L")
    # Resize the shorter side (torchvision Resize(int)), then center crop (torchvision CenterCrop).
    resize = math.floor(min(height, width) * RESIZE_RATIO)
    w, h = image.size
    scale = resize / min(w, h)
    new_w, new_h = (
        (resize, max(resize, round(h * scale))) if w <= h else (max(resize, round(w * scale)), resize)
    )
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    top, left = round((new_h - height) / 2), round((new_w - width) / 2)
    image = image.crop((left, top, left + width, top + height))
    pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels)
    if spec.dtype == "uint8":
        row = pixels.astype(np.uint8)  # the model normalises inside
    else:
        mean = np.asarray(manifest.normalization.mean[:channels], dtype=np.float32)
        std = np.asarray(manifest.normalization.std[:channels], dtype=np.float32)
        row = ((pixels / 255.0 - mean) / std).astype(spec.dtype)
    return np.transpose(row, (2, 0, 1)) if spec.layout == "NCHW" else row


def dataset_split_dir(manifest: Manifest, dataset: Path | None) -> Path:
    root = Path(dataset) if dataset is not None else Path(manifest.dataset.path)
    split = root / manifest.dataset.eval_split
    if not split.is_dir():
        raise DatasetError(
            f"no {manifest.dataset.eval_split!r} split at {split} for model {manifest.model!r} "
            f"(dataset {manifest.dataset.name!r}); pass --dataset with the ImageFolder root it was trained on"
        )
    return split


def load_pool(
    manifest: Manifest,
    dataset: Path | None = None,
    limit: int = 256,
    seed: int = 0,
    image_sizes: tuple[int, ...] = (),
) -> ImagePool:
    """Up to ``limit`` images of the evaluation split, a seeded sample across all classes. A split
    with any problem is refused first, every problem listed: the same checker, and the same lines,
    as `imgbench data check` and the trainers. ``image_sizes``: image ``i`` is preprocessed at
    ``image_sizes[i % len(image_sizes)]`` px (for a dynamic-shape model)."""
    split = dataset_split_dir(manifest, dataset)
    require_clean(split.parent, splits=(split.name,), user="the load generator's image pool")
    files: list[tuple[Path, int]] = []
    for folder in sorted(p for p in split.iterdir() if p.is_dir()):
        if folder.name not in manifest.class_names:
            raise DatasetError(
                f"class folder {folder.name!r} in {split} is not a class of model {manifest.model!r} "
                f"({manifest.class_names[:10]}...): wrong dataset?"
            )
        label = manifest.class_names.index(folder.name)
        files.extend((f, label) for f in sorted(folder.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DatasetError(f"no images under {split}")
    random.Random(seed).shuffle(files)
    files = files[:limit]
    rows, labels = [], []
    sized = [at_size(manifest, size) for size in image_sizes] or [manifest]
    for number, (path, label) in enumerate(files):
        try:
            with Image.open(path) as image:
                rows.append(preprocess(image, sized[number % len(sized)]))
        except (UnidentifiedImageError, OSError) as exc:
            raise DatasetError(f"unreadable image {path}: {exc}") from None
        labels.append(label)
    names = tuple(str(p) for p, _ in files)
    if not image_sizes:
        return ImagePool(np.stack(rows), np.asarray(labels, dtype=np.int64), names)
    images = np.empty(len(rows), dtype=object)
    images[:] = rows
    sizes = np.asarray([image_sizes[i % len(image_sizes)] for i in range(len(rows))], dtype=np.int64)
    return ImagePool(images, np.asarray(labels, dtype=np.int64), names, sizes=sizes)
