"""Bad datasets: `imgbench data check` names each bad file (zero bytes, truncated, a decompression
bomb, a symlink loop, a dangling link, a file or folder the user cannot read) and reads the unusual but
valid ones (CMYK, 16-bit, palette, alpha, EXIF-rotated) and a class folder with a thousand files; the
CLI prints one line per problem and ``require_clean`` (the trainers', the load generator's) refuses
with the same lines."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from bad_datasets import BAD_FILES, cli_problem_lines, write_bad_tree
from PIL import Image

from imgbench.data.check import MAX_PIXELS, DatasetCheckError, check_imagefolder, require_clean

BAD = {
    "zero.png": "empty file (0 bytes)",
    "truncated.png": "unreadable image",
    "bomb.png": "decompression bomb",
    "loop.png": "unreadable image",
    "dangling.png": "unreadable image",
}
VALID = ("cmyk.jpg", "sixteen_bit.png", "palette.png", "alpha.png", "rotated.jpg")


@pytest.fixture(scope="module")
def bad_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad-data")
    for split in ("train", "val"):
        for label in ("a", "b"):
            folder = root / split / label
            folder.mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(folder / "ok.png")
    odd = root / "train" / "a"
    (odd / "zero.png").write_bytes(b"")
    whole = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(whole, "PNG")
    (odd / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    side = int((MAX_PIXELS * 1.2) ** 0.5)
    Image.new("1", (side, side)).save(odd / "bomb.png")  # a few KB on disk, 60 Mpx decoded
    (odd / "loop.png").symlink_to(odd / "loop.png")
    (odd / "dangling.png").symlink_to(odd / "gone.png")
    Image.new("CMYK", (8, 8), (0, 50, 100, 0)).save(odd / "cmyk.jpg")
    Image.new("I;16", (8, 8), 40000).save(odd / "sixteen_bit.png")
    Image.new("P", (8, 8), 3).save(odd / "palette.png")
    Image.new("RGBA", (8, 8), (1, 2, 3, 128)).save(odd / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° CW to display
    Image.new("RGB", (8, 4)).save(odd / "rotated.jpg", exif=exif)
    many = root / "train" / "b"
    for index in range(1_000):
        Image.new("L", (4, 4), index % 256).save(many / f"{index:04d}.png")
    return root


def test_check_names_each_bad_file_and_reads_the_unusual_valid_ones(bad_tree: Path) -> None:
    report = check_imagefolder(bad_tree)
    found = {problem.path.name: problem.message for problem in report.problems}
    for name, message in BAD.items():
        assert name in found and message in found[name], (name, found.get(name))
    assert not set(VALID) & set(found), found
    assert set(found) == set(BAD), found
    assert report.splits["train"] == {"a": 1 + len(VALID), "b": 1_001}


def test_the_cli_prints_one_line_per_problem_and_require_clean_refuses_with_the_same(tmp_path: Path) -> None:
    root = write_bad_tree(tmp_path / "bad")
    printed = cli_problem_lines(root)
    report = check_imagefolder(root)
    assert printed == report.problem_lines()
    for split in ("train", "val"):
        for name, message in BAD_FILES.items():
            assert any(
                line.startswith(f"problem {root / split / 'a' / name}: {message}") for line in printed
            ), (
                name,
                printed,
            )
    with pytest.raises(DatasetCheckError) as refused:
        require_clean(root, splits=("train", "val"), user="a trainer")
    first, *listed = str(refused.value).splitlines()
    assert listed == printed
    assert first.startswith(f"{len(printed)} problem(s) in {root}, refused by a trainer: ")


def test_require_clean_names_a_missing_split_and_passes_a_clean_tree(tmp_path: Path) -> None:
    root = write_bad_tree(tmp_path / "clean", bad_splits=())
    assert require_clean(root, splits=("train", "val")).splits == {
        "train": {"a": 4, "b": 4},
        "val": {"a": 4, "b": 4},
    }
    with pytest.raises(DatasetCheckError, match=r"test.*: split folder 'test' does not exist"):
        require_clean(root, splits=("train", "test"))


# Running as root, every file is readable: the check runs as nobody to meet a file it cannot open.
UNPRIVILEGED = shutil.which("setpriv")


@pytest.mark.skipif(UNPRIVILEGED is None or os.geteuid() != 0, reason="needs root and setpriv (util-linux)")
def test_files_and_folders_the_user_cannot_read_are_named() -> None:
    # pytest's tmp_path is 0700 under root's folder; nobody needs a tree it can walk.
    with tempfile.TemporaryDirectory(prefix="imgbench-unreadable-") as scratch:
        root = Path(scratch) / "data"
        write_bad_tree(root, bad_splits=())
        Path(scratch).chmod(0o755)
        for folder in [root, *root.rglob("*")]:
            folder.chmod(0o755 if folder.is_dir() else 0o644)
        secret = root / "train" / "a" / "0.png"
        secret.chmod(0o600)  # root's alone
        locked = root / "val" / "b"
        locked.chmod(0o700)
        program = (
            "import sys; from imgbench.data.check import check_imagefolder\n"
            "print('\\n'.join(check_imagefolder(sys.argv[1]).problem_lines()))\n"
        )
        result = subprocess.run(
            [UNPRIVILEGED, "--reuid=65534", "--regid=65534", "--clear-groups",
             sys.executable, "-c", program, str(root)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"problem {secret}: not readable by uid 65534 (Permission denied)" in lines, lines
    assert f"problem {locked}: folder not readable by uid 65534 (Permission denied)" in lines, lines
    assert len(lines) == 2, lines  # every other file, as root made it, is readable and valid
