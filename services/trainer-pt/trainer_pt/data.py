"""ImageFolder datasets with the seed's transforms, and the sampler that makes an epoch resumable.

>>> splits = load_splits(Path("data/digits"), image_size=32)      # doctest: +SKIP
>>> splits.class_names[:3]                                        # doctest: +SKIP
['0', '1', '2']
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision import datasets, transforms

from imgbench.data.check import require_clean
from imgbench.data.imagefolder import SPLITS
from imgbench.errors import DatasetError
from imgbench.manifest import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)


def train_transform(image_size: int, crop_scale_min: float = 0.08, hflip: float = 0.5) -> transforms.Compose:
    return transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True),
            transforms.RandomHorizontalFlip(hflip),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def eval_transform(image_size: int, resize_size: int | None = None) -> transforms.Compose:
    # The seed's 256/224 resize ratio, so the centre crop keeps the same share of the image at any size.
    resize = resize_size or math.floor(image_size * 256 / 224)
    return transforms.Compose(
        [
            transforms.Resize(resize, antialias=True),
            transforms.CenterCrop(image_size),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def load_rgb(path: str) -> Image.Image:
    """PIL loader that names the file when it is not a readable image."""
    try:
        with open(path, "rb") as handle, Image.open(handle) as image:
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(f"unreadable image {path}: {exc}") from None


@dataclass(frozen=True)
class Splits:
    root: Path
    train: datasets.ImageFolder
    val: datasets.ImageFolder
    class_names: list[str]


def check_dataset(root: Path) -> None:
    """Refuse a tree with any problem before training: the core's checker (``imgbench data check``),
    every problem listed, one a line; train/ and val/ must both be there."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    require_clean(root, splits=SPLITS, user="trainer-pt")


def load_splits(
    root: Path,
    image_size: int,
    check: bool = True,
    crop_scale_min: float = 0.08,
    hflip: float = 0.5,
    augment: bool = True,
    val_resize_size: int | None = None,
) -> Splits:
    """train/ and val/ of an ImageFolder tree with the seed's transforms; val classes must equal train's.
    ``augment=False`` gives train the val preprocessing (``--no-augment``)."""
    root = Path(root)
    if check:
        check_dataset(root)
    train_tf = (
        train_transform(image_size, crop_scale_min, hflip)
        if augment
        else eval_transform(image_size, val_resize_size)
    )
    train = datasets.ImageFolder(str(root / "train"), transform=train_tf, loader=load_rgb)
    val = datasets.ImageFolder(
        str(root / "val"), transform=eval_transform(image_size, val_resize_size), loader=load_rgb
    )
    if train.classes != val.classes:
        raise DatasetError(f"{root}: train classes {train.classes} differ from val classes {val.classes}")
    return Splits(root=root, train=train, val=val, class_names=list(train.classes))


class EpochSampler(Sampler[int]):
    """Seeded per-epoch shuffle, sharded by rank, that can start partway through an epoch.

    The permutation depends only on (seed, epoch), so a resumed run sees the same order and
    ``skip`` drops the samples already trained on. Shards are padded to equal length like
    ``DistributedSampler`` so every DDP rank takes the same number of steps.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.size, self.seed, self.rank, self.world_size, self.shuffle = size, seed, rank, world_size, shuffle
        self.epoch = 0
        self.skip = 0
        self.per_rank = math.ceil(size / world_size)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.size, generator=generator).tolist()
        else:
            order = list(range(self.size))
        order += order[: self.per_rank * self.world_size - self.size]
        return iter(order[self.rank :: self.world_size][self.skip :])

    def __len__(self) -> int:
        return self.per_rank - self.skip


class ShardSampler(Sampler[int]):
    """Every rank-th sample without padding, so a sharded evaluation counts each image once."""

    def __init__(self, size: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, size, world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    dataset: Dataset, batch_size: int, sampler: Sampler[int], workers: int, pin_memory: bool, drop_last: bool
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        drop_last=drop_last,
        # Workers survive between epochs: re-forking them every epoch costs seconds on 2 cores.
        persistent_workers=workers > 0,
    )
