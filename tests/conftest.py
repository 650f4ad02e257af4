"""Fixtures every core suite shares. Framework-free: this file is imported by the core venv's runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgbench.data.digits import write_digits


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits dataset at 16×16, written once per session (read-only for tests)."""
    return write_digits(tmp_path_factory.mktemp("data") / "digits", size=16, seed=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """Digits models of both trainers, trained once per session (see tests/trained_digits.py)."""
    from trained_digits import trained_or_reused

    return trained_or_reused(tmp_path_factory.mktemp("trained"))
