"""tf.data pipelines from an ImageFolder tree (``ROOT/train/<class>/*``, ``ROOT/val/<class>/*``), with
trainer-pt's preprocessing:

- train: random resized crop (scale 0.08–1, ratio 3/4–4/3) + horizontal flip (p 0.5), like torchvision's
  ``RandomResizedCrop`` + ``RandomHorizontalFlip``;
- val: resize the shorter side to ``val_resize_size`` (default size·256/224), center crop, like
  ``Resize`` + ``CenterCrop``;
- both: ``(pixel/255 - mean) / std`` with ImageNet statistics, NHWC float32.

Class order is the sorted folder names (torchvision's ImageFolder order). Files are listed in Python,
decoded once by ``tf.io.decode_image`` and, when the decoded split fits the cache budget, kept in memory
so later epochs only augment. (The seed article maps a path-decoding function over
``image_dataset_from_directory``'s already-decoded images; here the dataset holds paths until decoded.)

Listing and checking need no TensorFlow, so a bad dataset fails in a second, every problem listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.data.check import require_clean
from imgbench.data.imagefolder import SPLITS, class_folders, image_files
from imgbench.errors import DatasetError
from imgbench.manifest import IMAGENET_MEAN, IMAGENET_STD

# What tf.io.decode_image reads; PIL reads more (TIFF, WebP, PPM), which would fail mid-training.
TF_DECODABLE = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif"})
DEFAULT_CACHE_BUDGET_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class SplitFiles:
    """One split of an ImageFolder tree: file paths, integer labels and the class names they index."""

    split_dir: Path
    paths: list[str]
    labels: list[int]
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.paths)


def list_split(root: Path, split: str, class_names: list[str] | None = None) -> SplitFiles:
    """Files and labels of ``root/split``; with ``class_names``, the split must have exactly those."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (write one with `imgbench data digits`)")
    split_dir = root / split
    folders = class_folders(split_dir)
    if not folders:
        raise DatasetError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image>")
    names = [folder.name for folder in folders]
    if class_names is not None and names != class_names:
        raise DatasetError(
            f"{split_dir} has classes {names}, but train has {class_names}: both splits need the same folders"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        files = image_files(folder)
        if not files:
            raise DatasetError(f"class folder {folder} holds no image files")
        undecodable = [f for f in files if f.suffix.lower() not in TF_DECODABLE]
        if undecodable:
            raise DatasetError(
                f"{undecodable[0]}: TensorFlow decodes only {', '.join(sorted(TF_DECODABLE))} "
                f"({len(undecodable)} such file(s) in {folder}); convert them first"
            )
        paths.extend(str(f) for f in files)
        labels.extend([label] * len(files))
    return SplitFiles(split_dir, paths, labels, names)


def list_dataset(root: Path) -> tuple[SplitFiles, SplitFiles]:
    train = list_split(root, "train")
    return train, list_split(root, "val", train.class_names)


def check_readable(root: Path) -> None:
    """Decode every image once (the core's checker, ``imgbench data check``; PIL, no TensorFlow) and
    refuse a tree with any problem, every one listed, one a line, so a bad file stops the run before
    training instead of in the middle of an epoch."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist (write one with `imgbench data digits`)")
    require_clean(root, splits=SPLITS, user="trainer-tf")


def decoded_bytes_estimate(split: SplitFiles) -> int:
    """Decoded uint8 size of the split, from the first image's header (ImageFolder trees are mostly
    one size; this is for a cache decision, not an exact figure)."""
    with Image.open(split.paths[0]) as image:
        width, height = image.size
    return len(split) * width * height * 3


def default_val_resize(image_size: int) -> int:
    """The seed's 256/224 ratio, rounded down like trainer-pt (36 for 32, 73 for 64, 256 for 224)."""
    return math.floor(image_size * 256 / 224)


# -- TensorFlow from here on -------------------------------------------------------------------------
def _tf():
    import tensorflow as tf

    return tf


def _decode(path):
    tf = _tf()
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _normalize(image):
    tf = _tf()
    mean = tf.constant(IMAGENET_MEAN, tf.float32) * 255.0
    std = tf.constant(IMAGENET_STD, tf.float32) * 255.0
    return (tf.cast(image, tf.float32) - mean) / std


def random_resized_crop(image, size: int, scale_min: float = 0.08):
    """torchvision's RandomResizedCrop(size, scale=(scale_min, 1), ratio=(3/4, 4/3)) on one HWC image.
    After 10 failed draws TensorFlow keeps the whole image where torchvision center-crops: rare."""
    tf = _tf()
    begin, crop_size, _ = tf.image.sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(scale_min, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, crop_size)
    return tf.image.resize(crop, (size, size), method="bilinear", antialias=True)


def resize_center_crop(image, size: int, resize_size: int):
    """torchvision's Resize(resize_size) (shorter side) + CenterCrop(size) on one HWC image."""
    tf = _tf()
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = resize_size / tf.reduce_min(shape)
    new_hw = tf.cast(tf.round(shape * scale), tf.int32)
    resized = tf.image.resize(image, new_hw, method="bilinear", antialias=True)
    top = tf.cast(tf.round(tf.cast(new_hw[0] - size, tf.float32) / 2.0), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_hw[1] - size, tf.float32) / 2.0), tf.int32)
    return tf.image.crop_to_bounding_box(resized, top, left, size, size)


def train_dataset(
    split: SplitFiles,
    image_size: int,
    batch_size: int,
    seed: int,
    cache: bool,
    crop_scale_min: float = 0.08,
    hflip: float = 0.5,
    augment: bool = True,
    shuffle: bool = True,
    val_resize_size: int | None = None,
    workers: int | None = None,
):
    """Shuffled, augmented batches of (NHWC float32, one-hot float32) for ``model.fit``.

    ``augment=False`` (``--no-augment``) gives train the val preprocessing; ``shuffle=False``
    (``--no-shuffle``) keeps file order, which is trainer-pt's order too (sorted classes, sorted files).
    ``workers`` is the number of parallel map calls (0: in-process, one at a time; None: AUTOTUNE)."""
    tf = _tf()
    num_classes = len(split.class_names)
    autotune = tf.data.AUTOTUNE
    parallel = autotune if workers is None else (workers or None)
    dataset = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))

    def reshuffle(ds):
        return ds.shuffle(len(split), seed=seed, reshuffle_each_iteration=True) if shuffle else ds

    if cache:
        # Decode once, keep the uint8 images, reshuffle the decoded images every epoch.
        dataset = dataset.map(lambda p, y: (_decode(p), y), num_parallel_calls=parallel).cache()
        dataset = reshuffle(dataset)
    else:
        dataset = reshuffle(dataset)
        dataset = dataset.map(lambda p, y: (_decode(p), y), num_parallel_calls=parallel)
    resize_size = val_resize_size or default_val_resize(image_size)

    # Plain tensor code with no Python control flow: AutoGraph has nothing to convert (and warns on closures).
    @tf.autograph.experimental.do_not_convert
    def augmented(image, label):
        image = random_resized_crop(image, image_size, crop_scale_min)
        # RandomHorizontalFlip(p): 0 for data that is not mirror-symmetric, such as digits.
        image = tf.where(tf.random.uniform([]) < hflip, tf.image.flip_left_right(image), image)
        return _normalize(image), tf.one_hot(label, num_classes)

    @tf.autograph.experimental.do_not_convert
    def plain(image, label):
        return _normalize(resize_center_crop(image, image_size, resize_size)), tf.one_hot(label, num_classes)

    dataset = dataset.map(augmented if augment else plain, num_parallel_calls=parallel)
    # trainer-pt drops the last partial batch (drop_last=True): same steps, no tiny final batch.
    return dataset.batch(batch_size, drop_remainder=True).prefetch(autotune)


def eval_dataset(
    split: SplitFiles, image_size: int, batch_size: int, resize_size: int, cache: bool, one_hot: bool = True
):
    """Deterministic batches (resize + center crop), in file order."""
    tf = _tf()
    num_classes = len(split.class_names)

    @tf.autograph.experimental.do_not_convert
    def preprocess(path, label):
        return _normalize(resize_center_crop(_decode(path), image_size, resize_size)), label

    @tf.autograph.experimental.do_not_convert
    def encode(image, label):
        return image, tf.one_hot(label, num_classes)

    dataset = tf.data.Dataset.from_tensor_slices((split.paths, split.labels))
    dataset = dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
    if one_hot:
        dataset = dataset.map(encode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
        dataset = dataset.cache()
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def eval_arrays(split: SplitFiles, image_size: int, resize_size: int, limit: int | None = None):
    """The whole split preprocessed as (N×H×W×3 float32, N int64) numpy arrays, for export checks."""
    if limit is not None:
        split = SplitFiles(split.split_dir, split.paths[:limit], split.labels[:limit], split.class_names)
    images, labels = [], []
    for x, y in eval_dataset(split, image_size, 64, resize_size, cache=False, one_hot=False):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels).astype(np.int64)


def representative_sample(split: SplitFiles, count: int, seed: int) -> SplitFiles:
    """``count`` training files drawn evenly across the split (calibration data for int8)."""
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(len(split), size=min(count, len(split)), replace=False))
    return SplitFiles(
        split.split_dir,
        [split.paths[i] for i in chosen],
        [split.labels[i] for i in chosen],
        split.class_names,
    )


def steps_per_epoch(num_images: int, global_batch: int) -> int:
    """Optimizer steps per epoch: full batches only, like trainer-pt's ``drop_last=True``."""
    if num_images < global_batch:
        raise DatasetError(
            f"the train split has {num_images} images, fewer than one batch of {global_batch}: "
            "lower --batch-size"
        )
    return num_images // global_batch
