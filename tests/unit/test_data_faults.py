"""Bad datasets: `imgbench data check` names each bad file (zero bytes, truncated, a decompression
bomb, a symlink loop, a dangling link) and reads the unusual but valid ones (CMYK, 16-bit, palette,
alpha, EXIF-rotated) and a class folder with a thousand files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from imgbench.data.check import MAX_PIXELS, check_imagefolder

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
