"""Validate an ImageFolder tree before anybody trains on it: every problem, by path.

`imgbench data check`, both trainers (before their first epoch) and the load generator's image pool
all call this one checker and refuse with the same list (``require_clean``).

>>> report = check_imagefolder(Path("data/digits"))          # doctest: +SKIP
>>> require_clean(Path("data/digits"), splits=("train", "val"))  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from imgbench.data.imagefolder import IMAGE_SUFFIXES, SPLITS
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

    def problem_lines(self) -> list[str]:
        """One ``problem PATH: WHAT`` line per problem: what the CLI prints and what a refusal lists."""
        return [f"problem {problem}" for problem in self.problems]

    def summary(self) -> str:
        return f"{len(self.problems)} problem(s) in {self.root}"


class DatasetCheckError(DatasetError):
    """A dataset with problems, refused before use; the message lists every problem, one a line."""

    def __init__(self, report: CheckReport, user: str):
        self.report = report
        more = f" and {len(report.problems) - 1} more" if len(report.problems) > 1 else ""
        # The first line names the first problem (one-line readers see it); then every problem, as
        # `imgbench data check` prints them.
        super().__init__(
            f"{report.summary()}, refused by {user}: {report.problems[0]}{more} "
            f"(`imgbench data check {report.root}` prints each of these lines):\n"
            + "\n".join(report.problem_lines())
        )


def _split_dirs(root: Path, splits: Sequence[str] | None) -> dict[str, Path]:
    if splits is not None:
        return {split: root / split for split in splits}
    present = {split: root / split for split in SPLITS if (root / split).is_dir()}
    # A tree without train/val is a single ImageFolder (a user's own data before splitting).
    return present or {".": root}


def _unreadable(exc: OSError) -> str:
    # As root every file is readable, so this names the uid that could not read it.
    return f"not readable by uid {os.geteuid()} ({exc.strerror or exc})"


def _entries(folder: Path) -> list[Path] | str:
    """The visible entries of ``folder``, sorted, or why it cannot be listed."""
    try:
        return sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except PermissionError as exc:
        return f"folder {_unreadable(exc)}"
    except OSError as exc:
        return f"folder cannot be listed ({exc.strerror or exc})"


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
    except PermissionError as exc:
        return _unreadable(exc)
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, unreadable, a symlink loop
        return f"unreadable image ({exc})"


def check_imagefolder(root: Path, splits: Sequence[str] | None = None) -> CheckReport:
    """Check every file under ``root``; problems are collected, not raised. ``splits``: the split
    folders to check (each must exist); by default train/ and val/ where present, else ``root`` as one
    ImageFolder."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder {root} does not exist")
    report = CheckReport(root=root)
    # PIL decodes with the GIL released: one thread per core checks a big tree that many times faster.
    with ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 1)) as pool:
        for split, split_dir in _split_dirs(root, splits).items():
            _check_split(split, split_dir, report, pool)
    if set(report.splits) == set(SPLITS):
        train_classes, val_classes = set(report.splits["train"]), set(report.splits["val"])
        for missing in sorted(train_classes - val_classes):
            report.problems.append(Problem(root / "val", f"class {missing!r} is in train but not in val"))
        for missing in sorted(val_classes - train_classes):
            report.problems.append(Problem(root / "train", f"class {missing!r} is in val but not in train"))
    return report


def _check_split(split: str, split_dir: Path, report: CheckReport, pool: Executor) -> None:
    if not split_dir.is_dir():
        report.problems.append(Problem(split_dir, f"split folder {split!r} does not exist"))
        return
    entries = _entries(split_dir)
    if isinstance(entries, str):
        report.problems.append(Problem(split_dir, entries))
        return
    classes = [p for p in entries if p.is_dir()]
    if not classes:
        report.problems.append(Problem(split_dir, "no class folders"))
    report.splits[split] = {class_dir.name: _check_class(class_dir, report, pool) for class_dir in classes}


def _check_class(class_dir: Path, report: CheckReport, pool: Executor) -> int:
    """Check one class folder's files into ``report``, in name order; the number of readable images."""
    entries = _entries(class_dir)
    if isinstance(entries, str):
        report.problems.append(Problem(class_dir, entries))
        return 0
    readable = 0
    images: list[Path] = []
    verdicts: dict[Path, str | None] = {}
    for path in entries:
        if path.is_dir():
            verdicts[path] = "nested folder inside a class folder"
        elif path.suffix.lower() not in IMAGE_SUFFIXES:
            verdicts[path] = f"unexpected file type {path.suffix or '(none)'}"
        else:
            images.append(path)
            verdicts[path] = None
    for path, result in zip(images, pool.map(_check_image, images), strict=True):
        if isinstance(result, str):
            verdicts[path] = result
        else:
            readable += 1
            report.image_sizes[result] += 1
    report.problems.extend(Problem(path, message) for path, message in verdicts.items() if message)
    if readable == 0:
        report.problems.append(Problem(class_dir, "class folder has no readable image"))
    return readable


def require_clean(root: Path, splits: Sequence[str] | None = None, user: str = "imgbench") -> CheckReport:
    """``check_imagefolder``, raising ``DatasetCheckError`` (every problem, one a line) unless the
    tree is clean. ``user`` names who refuses (a trainer, the load generator) in the message."""
    report = check_imagefolder(root, splits)
    if not report.ok:
        raise DatasetCheckError(report, user)
    return report
