"""The project's documentation lives in the repository: no tracked file points readers to a path outside
it (the design, style and platform notes are docs/architecture.md, docs/style.md, docs/platform-notes.md),
and every docs/ page a file names exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from imgbench.paths import project_root

ROOT = project_root()
# Built from pieces so this file does not match itself.
OUTSIDE = re.compile(
    r"\.\./" + "shared"
    + r"|" + "shared/" + r"(ARCHITECTURE|STYLE|PLATFORM" + "-NOTES)"
    + r"|\b" + "PLATFORM-" + r"NOTES\b"
    + r"|(?<![\w/-])(" + "ARCHITECTURE" + r"|" + "STYLE" + r")\.md"
)  # fmt: skip
DOCS_LINK = re.compile(r"\bdocs/([\w.-]+\.md)")


def tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: nothing tracked to check")
    files = []
    for name in filter(None, listed.split("\0")):
        path = ROOT / name
        if path.is_file() and path.suffix not in {".png", ".jpg", ".gz", ".tar"}:
            files.append(path)
    return files


def _text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return ""


def test_no_tracked_file_points_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in tracked_text_files()
        for number, line in enumerate(_text(path).splitlines(), start=1)
        if OUTSIDE.search(line)
    ]
    assert not offenders, "files pointing outside the repository (use docs/...):\n" + "\n".join(offenders)


def test_every_docs_page_named_exists() -> None:
    missing = {
        f"{path.relative_to(ROOT)} names docs/{page}"
        for path in tracked_text_files()
        for page in DOCS_LINK.findall(_text(path))
        if not (ROOT / "docs" / page).is_file()
    }
    assert not missing, sorted(missing)


def test_the_three_pages_exist() -> None:
    for page in ("architecture.md", "style.md", "platform-notes.md"):
        assert (ROOT / "docs" / page).stat().st_size > 1000, page
