"""Shared fixtures of the trainer-tf suite: the digits at 32×32 written once, one training run
(mobilenet_v3_small, the catalog's CPU default) trained and exported once, reused by every test that
only reads it. Trainer processes run exactly as the Dockerfile runs them: ``python -m trainer_tf``."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgbench.data.digits import write_digits

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVICE_ROOT = REPO_ROOT / "services" / "trainer-tf"
# The venv installs the service editable; this keeps the suite working from a bare checkout too.
if str(SERVICE_ROOT) not in sys.path:
    sys.path.insert(0, str(SERVICE_ROOT))

IMAGE_SIZE = 32
ARCHITECTURE = "mobilenet_v3_small"
EPOCHS = 6
# trainer-pt's test recipe (crops keeping ≥ 50% of the image: 8% of a 32-px digit is a stroke fragment;
# batch-norm momentum 0.1) except the learning rate: trainer-pt's peak 0.2 (--lr 1.6) diverges in Keras
# (measured: train loss 2.1 → 2.7, val loss 1e4 after epoch 2); peak 0.02 reached 92.8% val top-1 in 6 epochs.
LR = "0.16"
RECIPE = ["--crop-scale-min", "0.5", "--bn-momentum", "0.1"]


def trainer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SERVICE_ROOT), env.get("PYTHONPATH")]))
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


def run_trainer(*args: str, cwd: Path | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "trainer_tf", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=trainer_env(),
        cwd=cwd,
    )


def train_args(data: Path, run_dir: Path, epochs: int = EPOCHS) -> list[str]:
    return [
        "train",
        "--data",
        str(data),
        "--model",
        ARCHITECTURE,
        "--image-size",
        str(IMAGE_SIZE),
        "--epochs",
        str(epochs),
        "--lr",
        LR,
        "--run-dir",
        str(run_dir),
        "--no-progress",
        *RECIPE,
    ]


@dataclass(frozen=True)
class TrainedRun:
    run_dir: Path
    repository: Path
    data: Path
    process: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def digits32(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits at 32×32 (1,438 train / 359 val), read-only for tests."""
    return write_digits(tmp_path_factory.mktemp("tf-data") / "digits32", size=IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, digits32: Path) -> TrainedRun:
    """One full `train` (with its export) from another working directory, to prove cwd independence."""
    base = tmp_path_factory.mktemp("tf-run")
    run_dir, repository = base / "run", base / "model-repository"
    process = run_trainer(*train_args(digits32, run_dir), "--model-repository", str(repository), cwd=base)
    assert process.returncode == 0, process.stderr[-4000:]
    return TrainedRun(run_dir, repository, digits32, process)
