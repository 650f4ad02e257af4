from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imgbench.cli import app
from imgbench.data.check import check_imagefolder
from imgbench.data.digits import write_digits
from imgbench.data.imagefolder import stratified_split
from imgbench.data.synthetic import write_synthetic
from imgbench.errors import DatasetError


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def test_digits_has_every_image_in_exactly_one_split(digits_dir: Path) -> None:
    info = json.loads((digits_dir / "dataset.json").read_text())
    train = sum(info["counts"]["train"].values())
    val = sum(info["counts"]["val"].values())
    assert train + val == 1797
    assert len(_files(digits_dir)) == 1797
    names = [Path(f).name for f in _files(digits_dir)]
    assert len(set(names)) == 1797, "an image was written to both splits"
    assert sorted(info["counts"]["train"]) == [str(d) for d in range(10)]


def test_digits_split_is_stratified(digits_dir: Path) -> None:
    counts = json.loads((digits_dir / "dataset.json").read_text())["counts"]
    for cls, n_val in counts["val"].items():
        share = n_val / (n_val + counts["train"][cls])
        assert share == pytest.approx(0.2, abs=0.01), f"class {cls}: {share:.3f} in val"


def test_digits_images_are_rgb_at_requested_size(digits_dir: Path) -> None:
    first = digits_dir / "train" / "0" / sorted(p.name for p in (digits_dir / "train" / "0").iterdir())[0]
    with Image.open(first) as image:
        assert image.mode == "RGB"
        assert image.size == (16, 16)
        pixels = np.asarray(image)
    assert pixels.max() > 200 and pixels.min() < 30, "digit strokes should span dark to bright"
    assert (pixels[..., 0] == pixels[..., 1]).all(), "gray digits: all channels equal"


def test_digits_is_deterministic_for_a_seed_and_varies_across_seeds(tmp_path: Path, digits_dir: Path) -> None:
    again = write_digits(tmp_path / "again", size=16, seed=0)
    assert _files(again) == _files(digits_dir)
    other = write_digits(tmp_path / "other", size=16, seed=1)
    assert _files(other) != _files(digits_dir)


def test_digits_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="--force"):
        write_digits(out, size=8)
    assert (out / "precious.txt").read_text() == "keep me"


def test_if_exists_skip_keeps_the_same_dataset_and_refuses_another(tmp_path: Path) -> None:
    """A second `docker compose up` passes --if-exists skip: the dataset is kept as it is, unless it was
    written with other parameters, which is named rather than silently trained on."""
    out = write_digits(tmp_path / "digits", size=8)
    marker = next((out / "train").rglob("*.png"))
    before = marker.stat().st_mtime_ns
    assert write_digits(out, size=8, if_exists="skip") == out
    assert marker.stat().st_mtime_ns == before  # not rewritten
    with pytest.raises(DatasetError, match=r"image_size=8 \(asked 16\).*--if-exists overwrite"):
        write_digits(out, size=16, if_exists="skip")
    write_digits(out, size=16, if_exists="overwrite")
    assert json.loads((out / "dataset.json").read_text())["image_size"] == 16
    with pytest.raises(DatasetError, match="--if-exists must be one of"):
        write_digits(out, size=16, if_exists="sometimes")
    result = CliRunner().invoke(
        app, ["data", "digits", "--out", str(out), "--size", "16", "--if-exists", "skip"]
    )
    assert result.exit_code == 0, result.output


def test_stratified_split_rejects_bad_fraction() -> None:
    with pytest.raises(DatasetError, match="val-fraction"):
        stratified_split(np.array([0, 1, 0, 1]), 1.5, seed=0)


def test_synthetic_counts_and_shape(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "s", classes=12, size=40, per_class=5, val_fraction=0.2)
    info = json.loads((root / "dataset.json").read_text())
    assert len(info["counts"]["train"]) == 12 and len(info["counts"]["val"]) == 12
    assert set(info["counts"]["train"].values()) == {4} and set(info["counts"]["val"].values()) == {1}
    with Image.open(next((root / "train" / "class_00").iterdir())) as image:
        assert image.size == (40, 40) and image.mode == "RGB"


def test_synthetic_classes_are_distinguishable(tmp_path: Path) -> None:
    root = write_synthetic(tmp_path / "s", classes=3, size=16, per_class=10)

    def mean_image(cls: str) -> np.ndarray:
        files = sorted((root / "train" / cls).iterdir())
        return np.mean([np.asarray(Image.open(f), dtype=np.float32) for f in files], axis=0)

    a, b = mean_image("class_0"), mean_image("class_1")
    assert np.abs(a - b).mean() > 10, "class patterns should differ far more than noise"


def test_check_passes_a_clean_tree(digits_dir: Path) -> None:
    report = check_imagefolder(digits_dir)
    assert report.ok, report.problems
    assert sum(report.splits["train"].values()) + sum(report.splits["val"].values()) == 1797


@pytest.fixture
def damaged_tree(tmp_path: Path, digits_dir: Path) -> Path:
    root = tmp_path / "damaged"
    shutil.copytree(digits_dir, root)
    victim = sorted((root / "train" / "3").iterdir())[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])  # truncated PNG: header intact, pixels cut
    (root / "train" / "4" / "notes.txt").write_text("not an image")
    Image.new("RGB", (16, 16)).save(root / "train" / "5" / "jpeg_in_disguise.png", format="JPEG")
    for f in (root / "val" / "7").iterdir():
        f.unlink()
    return root


def test_check_reports_every_problem_by_path(damaged_tree: Path) -> None:
    report = check_imagefolder(damaged_tree)
    by_path = {p.path.relative_to(damaged_tree).as_posix(): p.message for p in report.problems}
    truncated = [k for k in by_path if k.startswith("train/3/")]
    assert len(truncated) == 1 and "unreadable" in by_path[truncated[0]]
    assert "unexpected file type" in by_path["train/4/notes.txt"]
    assert "JPEG" in by_path["train/5/jpeg_in_disguise.png"]
    assert "no readable image" in by_path["val/7"]
    assert not report.ok


def test_check_cli_exits_nonzero_and_names_files(damaged_tree: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", str(damaged_tree)])
    assert result.exit_code == 1
    assert "notes.txt" in result.output and "val/7" in result.output


def test_check_cli_exits_zero_on_clean_tree(digits_dir: Path) -> None:
    result = CliRunner().invoke(app, ["data", "check", str(digits_dir)])
    assert result.exit_code == 0, result.output
