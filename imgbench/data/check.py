"""Validate an ImageFolder tree before anybody trains on it: every problem, by path."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from imgbench.data.imagefolder import IMAGE_SUFFIXES, SPLITS, class_folders
from imgbench.errors import DatasetError


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class CheckReport:
    root: Path
    splits: dict[str, dict[str, int]] = field(default_factory=dict)
    """split -> class -> number of readable images"""
    image_sizes: Counter[tuple[int, int]] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _split_dirs(root: Path) -> dict[str, Path]:
    present = {split: root / split for split in SPLITS if (root / split).is_dir()}
    # A tree without train/val is a single ImageFolder (a user's own data before splitting).
    return present or {".": root}


# What PIL calls each format, by file suffix: a .png holding a JPEG is a mismatched file.
_FORMAT_BY_SUFFIX = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".gif": "GIF",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
}


# An image above this many pixels is refused before it is decoded: a decompression bomb (a few KB of
# PNG that inflate to gigabytes) or a scan far beyond what a classifier is trained on. PIL's own
# limit (Image.MAX_IMAGE_PIXELS, 89.5 Mpx) only warns below twice itself.
MAX_PIXELS = 50_000_000


def _check_image(path: Path) -> tuple[int, int] | str:
    """(width, height) of a readable image, or why it is not one."""
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return (
                    f"{width}x{height} pixels is above the {MAX_PIXELS:,}-pixel limit (decompression bomb?)"
                )
            image.load()  # verify() misses truncated pixel data; decoding does not.
            expected = _FORMAT_BY_SUFFIX.get(path.suffix.lower())
            if expected and image.format != expected:
                return f"content is {image.format}, but the suffix says {expected}"
            return image.size
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except Image.DecompressionBombError as exc:  # not an OSError: it used to end the whole check
        return f"decompression bomb ({exc})"
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, unreadable, a symlink loop
        return f"unreadable image ({exc})"


def check_imagefolder(root: Path) -> CheckReport:
    """Check every file under ``root``; problems are collected, not raised."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    report = CheckReport(root=root)
    for split, split_dir in _split_dirs(root).items():
        counts: dict[str, int] = {}
        classes = class_folders(split_dir)
        if not classes:
            report.problems.append(Problem(split_dir, "no class folders"))
        for class_dir in classes:
            readable = 0
            for path in sorted(p for p in class_dir.iterdir() if not p.name.startswith(".")):
                if path.is_dir():
                    report.problems.append(Problem(path, "nested folder inside a class folder"))
                    continue
                if path.suffix.lower() not in IMAGE_SUFFIXES:
                    report.problems.append(Problem(path, f"unexpected file type {path.suffix or '(none)'}"))
                    continue
                result = _check_image(path)
                if isinstance(result, str):
                    report.problems.append(Problem(path, result))
                else:
                    readable += 1
                    report.image_sizes[result] += 1
            if readable == 0:
                report.problems.append(Problem(class_dir, "class folder has no readable image"))
            counts[class_dir.name] = readable
        report.splits[split] = counts
    if set(report.splits) == set(SPLITS):
        train_classes, val_classes = set(report.splits["train"]), set(report.splits["val"])
        for missing in sorted(train_classes - val_classes):
            report.problems.append(Problem(root / "val", f"class {missing!r} is in train but not in val"))
        for missing in sorted(val_classes - train_classes):
            report.problems.append(Problem(root / "train", f"class {missing!r} is in val but not in train"))
    return report
