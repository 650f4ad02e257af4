"""Bad ImageFolder trees for the refusal tests of every suite (core, trainers, loadgen), and what
`imgbench data check` says about them: every user of a dataset must refuse with the CLI's lines.
Framework-free (PIL only), so each venv imports it."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from PIL import Image

# File name -> what the check says about it (a fragment of its message).
BAD_FILES = {
    "zero.png": "empty file (0 bytes)",
    "truncated.png": "unreadable image",
    "loop.png": "unreadable image",
    "dangling.png": "unreadable image",
    "text.png": "not an image file PIL can identify",
    "notes.txt": "unexpected file type .txt",
}


def write_bad_tree(root: Path, bad_splits: tuple[str, ...] = ("train", "val")) -> Path:
    """train/ and val/ with classes a and b of small valid images, and every file of ``BAD_FILES``
    in class a of each split in ``bad_splits``."""
    for split in ("train", "val"):
        for label, shade in (("a", 40), ("b", 200)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for index in range(4):
                Image.new("RGB", (16, 16), (shade, index * 20, 0)).save(folder / f"{index}.png")
    whole = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(whole, "PNG")
    for split in bad_splits:
        odd = root / split / "a"
        (odd / "zero.png").write_bytes(b"")
        (odd / "truncated.png").write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
        (odd / "loop.png").symlink_to(odd / "loop.png")
        (odd / "dangling.png").symlink_to(odd / "gone.png")
        (odd / "text.png").write_text("not a picture\n")
        (odd / "notes.txt").write_text("a stray file\n")
    return root


def cli_problem_lines(root: Path) -> list[str]:
    """The ``problem PATH: WHAT`` lines `imgbench data check ROOT` prints (it must exit 1)."""
    cli = Path(sys.executable).parent / "imgbench"
    result = subprocess.run(
        [str(cli), "data", "check", str(root)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return problem_lines(result.stderr)


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("problem ")]
