"""Writing and listing ImageFolder trees: ``ROOT/<split>/<class>/<file>.png``.

Writers build the whole tree in a temporary sibling folder and rename it into place, so an
interrupted run never leaves a half-written dataset that a trainer would silently accept.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imgbench.atomic import atomic_write_text
from imgbench.errors import DatasetError

SPLITS = ("train", "val")
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"})
DATASET_INFO_FILE = "dataset.json"


@dataclass(frozen=True)
class LabelledImage:
    split: str
    class_name: str
    file_name: str
    pixels: np.ndarray  # H×W×3 uint8


IF_EXISTS = ("error", "skip", "overwrite")


def write_imagefolder(
    out: Path,
    images: Iterable[LabelledImage],
    info: dict[str, object],
    force: bool = False,
    if_exists: str = "error",
) -> Path:
    """Write ``images`` under ``out`` plus ``dataset.json``. An existing non-empty ``out``: ``if_exists``
    "error" refuses, "overwrite" (or ``force``) replaces it, "skip" keeps it when its ``dataset.json``
    records the same parameters (a second ``docker compose up`` must not rewrite the dataset) and
    refuses, naming the differences, when it does not."""
    out = Path(out)
    if if_exists not in IF_EXISTS:
        raise DatasetError(f"--if-exists must be one of {', '.join(IF_EXISTS)}, got {if_exists!r}")
    if force:
        if_exists = "overwrite"
    if out.exists() and any(out.iterdir()):
        if if_exists == "skip":
            _check_same_dataset(out, info)
            return out
        if if_exists == "error":
            raise DatasetError(
                f"{out} already exists and is not empty; pass --if-exists overwrite (or --force) to replace "
                "it, or --if-exists skip to keep it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        counts: Counter[tuple[str, str]] = Counter()
        for image in images:
            folder = staging / image.split / image.class_name
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image.pixels, mode="RGB").save(folder / image.file_name, format="PNG")
            counts[(image.split, image.class_name)] += 1
        split_counts = {
            split: {cls: n for (s, cls), n in sorted(counts.items()) if s == split} for split in SPLITS
        }
        atomic_write_text(
            staging / DATASET_INFO_FILE, json.dumps({**info, "counts": split_counts}, indent=2) + "\n"
        )
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _check_same_dataset(out: Path, info: dict[str, object]) -> None:
    existing = read_dataset_info(out)
    if not existing:
        raise DatasetError(
            f"{out} exists but has no {DATASET_INFO_FILE}: not a tree imgbench wrote, not skipped"
        )
    different = sorted(key for key, value in info.items() if existing.get(key) != value)
    if different:
        found = ", ".join(f"{key}={existing.get(key)!r} (asked {info[key]!r})" for key in different)
        raise DatasetError(f"{out} holds another dataset: {found}; pass --if-exists overwrite to replace it")


def read_dataset_info(root: Path) -> dict[str, object]:
    """``dataset.json`` of a tree imgbench wrote, or an empty dict for a user's own tree."""
    info_path = Path(root) / DATASET_INFO_FILE
    if not info_path.is_file():
        return {}
    return json.loads(info_path.read_text(encoding="utf-8"))


def class_folders(split_dir: Path) -> list[Path]:
    """Class folders of one split, sorted by name (the label order torchvision and Keras both use)."""
    if not split_dir.is_dir():
        raise DatasetError(f"dataset split folder {split_dir} does not exist")
    return sorted(
        (p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name
    )


def image_files(class_dir: Path) -> list[Path]:
    return sorted(p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) with each class split in the same proportion; deterministic for a seed."""
    if not 0.0 < val_fraction < 1.0:
        raise DatasetError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train_idx: list[int] = []
    val_idx: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        n_val = max(1, round(len(members) * val_fraction))
        if n_val >= len(members):
            raise DatasetError(
                f"class {label} has {len(members)} images: too few for --val-fraction {val_fraction}"
            )
        val_idx.extend(members[:n_val].tolist())
        train_idx.extend(members[n_val:].tolist())
    return np.array(sorted(train_idx)), np.array(sorted(val_idx))
